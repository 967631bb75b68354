from rest_framework import serializers

from .models import ChangeLogEntry, SyncRun


class SyncRunSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:sync-run-detail")
    duration_seconds = serializers.SerializerMethodField()

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
        ]
        read_only_fields = fields

    def get_duration_seconds(self, run) -> float | None:
        return run.duration.total_seconds() if run.duration else None


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
