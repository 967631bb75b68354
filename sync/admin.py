from datetime import timedelta

from django.contrib import admin
from django.db.models import Subquery
from django.utils import timezone
from django.utils.html import format_html

from ops.mixins import NoBulkDeleteMixin, PartnerColumnMixin, changelist_url

from .models import ChangeLogEntry, SyncRun, SyncState

CHANGES_SHOWN = 200  # an initial sync can log tens of thousands of changes: the rest via link


class ChangeInline(admin.TabularInline):
    model = ChangeLogEntry
    fields = ["record_type", "record_id", "autotask_id", "field", "old_value", "new_value"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    show_change_link = False
    verbose_name_plural = f"Changes (the first {CHANGES_SHOWN}; see 'All changes' for the rest)"

    def has_add_permission(self, request, obj=None):
        return False


class SinceFilter(admin.SimpleListFilter):
    title = "created"
    parameter_name = "since"
    WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return [("hour", "In the last hour"), ("day", "In the last day"), ("week", "In 7 days")]

    def queryset(self, request, queryset):
        window = self.WINDOWS.get(self.value())
        if window is None:
            return queryset
        return queryset.filter(created_at__gte=timezone.now() - window)


@admin.register(SyncRun)
class SyncRunAdmin(NoBulkDeleteMixin, PartnerColumnMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "partner_name",
        "kind",
        "trigger",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "created",
        "updated",
        "skipped",
        "failed",
        "requests_used",
        "error_kind",
        "requested_by",
    ]
    list_filter = ["status", "kind", "trigger", SinceFilter, "error_kind"]
    search_fields = ["partner__name", "error_message", "=id"]
    list_select_related = ["partner", "requested_by"]
    date_hierarchy = "created_at"
    readonly_fields = ["partner_name", "all_changes"] + [
        f.name for f in SyncRun._meta.fields if f.name != "partner"
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "partner_name",
                    ("kind", "trigger", "status"),
                    "requested_by",
                    ("created_at", "started_at", "finished_at", "heartbeat_at"),
                    ("attempts", "phase", "slot"),
                ]
            },
        ),
        (
            "Counts",
            {
                "fields": [
                    ("fetched", "created", "updated", "unchanged", "skipped", "failed"),
                    "skipped_reasons",
                    "requests_used",
                    "all_changes",
                ]
            },
        ),
        ("Error", {"fields": ["error_kind", "error_message"]}),
        ("Internals", {"classes": ["collapse"], "fields": ["cursor", "owner", "id"]}),
    ]
    inlines = [ChangeInline]

    @admin.display(description="All changes")
    def all_changes(self, obj):
        count = ChangeLogEntry.objects.filter(run=obj).count()
        url = changelist_url(ChangeLogEntry, run__id__exact=obj.pk)
        return format_html('<a href="{}">{} change(s)</a>', url, count)

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ChangeInline) and obj is not None:
            first = ChangeLogEntry.objects.filter(run=obj).order_by("id").values("id")
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=Subquery(first[:CHANGES_SHOWN]))
        return kwargs

    def has_add_permission(self, request):
        return False


@admin.register(ChangeLogEntry)
class ChangeLogEntryAdmin(NoBulkDeleteMixin, PartnerColumnMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "partner_name",
        "run",
        "record_type",
        "record_id",
        "autotask_id",
        "field",
        "old_value",
        "new_value",
        "created_at",
    ]
    list_filter = ["record_type", "field"]
    search_fields = ["=autotask_id", "=record_id", "partner__name"]
    list_select_related = ["partner", "run"]
    readonly_fields = [f.name for f in ChangeLogEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SyncState)
class SyncStateAdmin(NoBulkDeleteMixin, PartnerColumnMixin, admin.ModelAdmin):
    list_display = [
        "partner_name",
        "lease_run",
        "lease_heartbeat_at",
        "invoices_created_cursor",
        "next_fetch_new_data_at",
        "next_fetch_unpaid_at",
    ]
    search_fields = ["partner__name"]
    list_select_related = ["partner", "lease_run"]
    readonly_fields = [
        "partner",
        "lease_run",
        "lease_owner",
        "lease_heartbeat_at",
        "invoices_created_cursor",
        "companies_changed_cursor",
        "last_success",
    ]

    def has_add_permission(self, request):
        return False  # created by the sync itself
