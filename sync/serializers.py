from django.urls import reverse
from rest_framework import serializers

from config.api import ErrorSerializer

from .models import ChangeLogEntry, SyncRun
from .selectors import waiting_for
from .wording import describe_run, plain_error


class SyncRunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:sync-run-detail")
    duration_seconds = serializers.SerializerMethodField()
    error_text = serializers.SerializerMethodField(
        help_text="The error in plain words for the partner (error_message is the raw one)."
    )

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "url",
            "kind",
            "trigger",
            "status",
            "phase",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "fetched",
            "created",
            "updated",
            "unchanged",
            "skipped",
            "failed",
            "skipped_reasons",
            "requests_used",
            "error_kind",
            "error_message",
            "error_text",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, run) -> float | None:
        return run.duration.total_seconds() if run.duration else None

    def get_error_text(self, run) -> str:
        return plain_error(run)


class ChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChangeLogEntry
        fields = [
            "id",
            "record_type",
            "record_id",
            "autotask_id",
            "field",
            "old_value",
            "new_value",
            "created_at",
        ]
        read_only_fields = fields


class ManualRunSerializer(SyncRunSerializer):
    """A run as the Preferences page shows it: plus its dashboard page, the number of changed
    fields in its change list, its error in plain words, and the run it waits for."""

    page_url = serializers.SerializerMethodField()
    changes = serializers.SerializerMethodField()
    error_text = serializers.SerializerMethodField()
    waiting_for = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    trigger_display = serializers.CharField(source="get_trigger_display", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)

    class Meta(SyncRunSerializer.Meta):
        fields = [
            *SyncRunSerializer.Meta.fields,
            "kind_display",
            "trigger_display",
            "status_display",
            "page_url",
            "changes",
            "error_text",
            "waiting_for",
            "description",
        ]
        read_only_fields = fields

    def get_page_url(self, run) -> str:
        return reverse("sync:run-detail", args=[run.pk])

    def get_changes(self, run) -> int:
        return ChangeLogEntry.objects.for_partner(run.partner).filter(run=run).count()

    def get_error_text(self, run) -> str:
        return plain_error(run)

    def get_waiting_for(self, run) -> str | None:
        other = waiting_for(run)
        return describe_run(other) if other else None

    def get_description(self, run) -> str:
        return describe_run(run)


class ManualSyncStartedSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The new SyncRun's id.")
    url = serializers.URLField(help_text="The run in the API (poll it for progress).")
    page_url = serializers.CharField(help_text="The run's page in the dashboard.")
    kind = serializers.ChoiceField(choices=SyncRun.Kind.choices)
    status = serializers.ChoiceField(choices=SyncRun.Status.choices)
    next_available_at = serializers.DateTimeField(
        help_text="When this action may start again (partner's time zone)."
    )


class ManualActionStatusSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SyncRun.Kind.choices)
    title = serializers.CharField()
    description = serializers.CharField()
    cooldown_seconds = serializers.IntegerField()
    available = serializers.BooleanField()
    available_at = serializers.DateTimeField(
        allow_null=True, help_text="Null: available now. Else in the partner's time zone."
    )
    wait_seconds = serializers.IntegerField()
    available_text = serializers.CharField(help_text='e.g. "available at 15:04 (in 12 min)"')
    start_url = serializers.CharField()
    last_run = ManualRunSerializer(allow_null=True, help_text="The last manual run of this kind.")


class ManualActionsSerializer(serializers.Serializer):
    fetch_new_data = ManualActionStatusSerializer()
    fetch_unpaid_invoices = ManualActionStatusSerializer()


class ManualSyncStatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="Whether this partner has manual syncs at all.")
    reason = serializers.CharField(allow_null=True, help_text="Why not, when not.")
    time_zone = serializers.CharField()
    now = serializers.DateTimeField()
    actions = ManualActionsSerializer(allow_null=True)
    current_run = ManualRunSerializer(
        allow_null=True, help_text="The partner's sync in progress (any kind or trigger)."
    )


class CooldownErrorSerializer(ErrorSerializer):
    kind = serializers.ChoiceField(choices=SyncRun.Kind.choices)
    available_at = serializers.DateTimeField(help_text="Partner's time zone, ISO 8601.")
    retry_after = serializers.IntegerField(help_text="Seconds; also in the Retry-After header.")
