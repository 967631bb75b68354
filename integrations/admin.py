from django.contrib import admin

from ops.mixins import (
    NoBulkDeleteMixin,
    ObjectOpsButtonsMixin,
    PartnerColumnMixin,
    connection_test,
    run_ops_syncs,
    schedules_set_paused,
)
from sync.models import SyncRun

from .models import AutotaskConnection, IntegrationEvent


@admin.register(AutotaskConnection)
class AutotaskConnectionAdmin(PartnerColumnMixin, ObjectOpsButtonsMixin, admin.ModelAdmin):
    """Credentials never appear: the encrypted username and secret are in no form, list or
    change message (Django's change message names changed fields, and only `schedules_paused`
    is editable here); only the mask (last 4 characters of the username) is shown."""

    list_display = [
        "partner_name",
        "status",
        "masked_username",
        "zone_name",
        "connected_at",
        "schedules_paused",
        "last_error_kind",
        "last_error_at",
    ]
    list_filter = ["status", "schedules_paused", "last_error_kind", "zone_name"]
    search_fields = ["partner__name", "account_email", "=database_ci"]
    list_select_related = ["partner"]
    fields = [
        "partner",
        "status",
        "masked_username",
        "account_email",
        "identifier",
        "filters",
        "zone_name",
        "zone_url",
        "web_url",
        "database_ci",
        "schedules_paused",
        "connected_at",
        "disconnected_at",
        "last_error_kind",
        "last_error_message",
        "last_error_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [f for f in fields if f != "schedules_paused"]
    actions = [
        "test_connection",
        "run_fetch_new_data_now",
        "run_fetch_unpaid_invoices_now",
        "pause_schedules",
        "resume_schedules",
    ]

    # The same actions as buttons on the change page (ops/mixins.py ObjectOpsButtonsMixin).
    object_ops_buttons = [
        ("test_connection", "Test connection"),
        ("run_fetch_new_data_now", "Run Fetch New Data now"),
        ("run_fetch_unpaid_invoices_now", "Run Fetch Unpaid Invoices now"),
        ("pause_schedules", "Pause schedules"),
        ("resume_schedules", "Resume schedules"),
    ]

    def get_object_ops_buttons(self, request, obj):
        hidden = "pause_schedules" if obj.schedules_paused else "resume_schedules"
        return [b for b in self.object_ops_buttons if b[0] != hidden]

    def has_add_permission(self, request):
        return False  # partners connect from the dashboard, where credentials are verified

    def has_delete_permission(self, request, obj=None):
        # Disconnecting erases the credentials but keeps the row (integrations/services.py);
        # deleting it here would lose the database identity that guards reconnects.
        return False

    # --- actions ---

    @admin.action(description="Test connection (with the stored credentials)", permissions=["ops"])
    def test_connection(self, request, queryset):
        for conn in queryset.select_related("partner"):
            outcome, level = connection_test(conn)
            self.log_change(request, conn, f"Tested connection: {outcome}")
            self.message_user(request, f"{conn.partner}: {outcome}", level)

    @admin.action(description="Run Fetch New Data now", permissions=["ops"])
    def run_fetch_new_data_now(self, request, queryset):
        targets = [(c.partner, c) for c in queryset.select_related("partner")]
        run_ops_syncs(self, request, targets, SyncRun.Kind.NEW_DATA)

    @admin.action(description="Run Fetch Unpaid Invoices now", permissions=["ops"])
    def run_fetch_unpaid_invoices_now(self, request, queryset):
        targets = [(c.partner, c) for c in queryset.select_related("partner")]
        run_ops_syncs(self, request, targets, SyncRun.Kind.UNPAID)

    @admin.action(description="Pause schedules", permissions=["ops"])
    def pause_schedules(self, request, queryset):
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume schedules", permissions=["ops"])
    def resume_schedules(self, request, queryset):
        self._set_paused(request, queryset, paused=False)

    def _set_paused(self, request, queryset, *, paused: bool):
        targets = [(c, c) for c in queryset.select_related("partner")]
        schedules_set_paused(self, request, targets, paused=paused)


@admin.register(IntegrationEvent)
class IntegrationEventAdmin(NoBulkDeleteMixin, PartnerColumnMixin, admin.ModelAdmin):
    list_display = ["created_at", "partner_name", "kind", "actor"]
    list_filter = ["kind"]
    search_fields = ["partner__name"]
    list_select_related = ["partner", "actor"]
    date_hierarchy = "created_at"
    readonly_fields = ["partner", "kind", "actor", "details", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
