from django.contrib import admin, messages
from django.utils import timezone

from config.encryption import SecretUnavailable
from ops.mixins import OpsActionsMixin, PartnerColumnMixin, run_ops_syncs
from sync.models import SyncRun

from .models import AutotaskConnection, IntegrationEvent
from .services import ConnectError, autotask_verify

# Verify failures that mean the stored API user no longer works (as the sync treats auth errors).
AUTH_FAILURES = {"unknown_user", "bad_secret", "bad_integration_code", "permission"}


@admin.register(AutotaskConnection)
class AutotaskConnectionAdmin(PartnerColumnMixin, OpsActionsMixin, admin.ModelAdmin):
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
            outcome, level = self._test_one(conn)
            self.log_change(request, conn, f"Tested connection: {outcome}")
            self.message_user(request, f"{conn.partner}: {outcome}", level)

    def _test_one(self, conn: AutotaskConnection) -> tuple[str, int]:
        """Runs autotask_verify; the text is for ops and the admin log (never a credential)."""
        if conn.username is None or conn.secret is None:
            return "disconnected: no stored credentials to test.", messages.WARNING
        try:
            verified = autotask_verify(
                username=conn.username.reveal(), secret=conn.secret.reveal(), with_picklists=False
            )
        except SecretUnavailable:
            conn.record_error(
                "credentials",
                "Stored Autotask credentials cannot be decrypted; reconnect.",
                needs_attention=True,
            )
            return (
                "stored credentials cannot be decrypted (FIELD_ENCRYPTION_KEYS): marked "
                "needs attention; the partner must reconnect.",
                messages.ERROR,
            )
        except ConnectError as exc:
            attention = exc.code in AUTH_FAILURES
            conn.record_error(exc.code, exc.message, needs_attention=attention)
            suffix = " Marked needs attention." if attention else ""
            return f"failed ({exc.code}): {exc.message}{suffix}", messages.ERROR
        if conn.database_ci is not None and verified.ci not in (None, conn.database_ci):
            return "failed: the credentials now reach a different Autotask database.", (
                messages.ERROR
            )
        # The API user works again (e.g. its permissions were fixed in Autotask): schedules
        # may pick the partner up again. Conditional, so a disconnect meanwhile stays.
        restored = AutotaskConnection.objects.filter(
            pk=conn.pk, status=AutotaskConnection.Status.NEEDS_ATTENTION
        ).update(
            status=AutotaskConnection.Status.CONNECTED,
            last_error_kind="",
            last_error_message="",
            updated_at=timezone.now(),
        )
        threshold = f", hourly threshold {verified.threshold:,}" if verified.threshold else ""
        text = f"OK (zone {verified.zone_name or verified.zone_url}{threshold})."
        if restored:
            text += " Status set back to connected."
        return text, messages.SUCCESS

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
        word = "paused" if paused else "resumed"
        changed = 0
        for conn in queryset.select_related("partner"):
            # Conditional UPDATE: only rows that change are logged.
            if (
                AutotaskConnection.objects.filter(pk=conn.pk)
                .exclude(schedules_paused=paused)
                .update(schedules_paused=paused, updated_at=timezone.now())
            ):
                changed += 1
                self.log_change(request, conn, f"Schedules {word}.")
        self.message_user(request, f"Schedules {word} for {changed} connection(s).")


@admin.register(IntegrationEvent)
class IntegrationEventAdmin(PartnerColumnMixin, admin.ModelAdmin):
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
