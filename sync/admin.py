from django.contrib import admin

from .models import ChangeLogEntry, SyncRun, SyncState


class ChangeInline(admin.TabularInline):
    model = ChangeLogEntry
    fields = ["record_type", "record_id", "autotask_id", "field", "old_value", "new_value"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    show_change_link = False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "partner",
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
    ]
    list_filter = ["status", "kind", "trigger"]
    search_fields = ["partner__name", "error_message"]
    list_select_related = ["partner"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in SyncRun._meta.fields]
    inlines = [ChangeInline]

    def has_add_permission(self, request):
        return False


@admin.register(SyncState)
class SyncStateAdmin(admin.ModelAdmin):
    list_display = [
        "partner",
        "lease_run",
        "lease_heartbeat_at",
        "invoices_created_cursor",
        "next_fetch_new_data_at",
        "next_fetch_unpaid_at",
    ]
    search_fields = ["partner__name"]
    readonly_fields = [
        "partner",
        "lease_run",
        "lease_owner",
        "lease_heartbeat_at",
        "invoices_created_cursor",
        "companies_changed_cursor",
        "last_success",
    ]
