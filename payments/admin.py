"""Ops views of payments: webhook deliveries (reprocess), the write-back outbox (retry/cancel)
and its attempts, reconciliation drift across partners. Read-only for everyone (money is changed
only by the payment services); secrets are never shown (the settings admin lists no secret
field)."""

from django.contrib import admin, messages
from django.utils.html import format_html

from config.api import DomainError
from ops.mixins import OpsActionsMixin, PartnerColumnMixin, change_url

from .models import (
    Payment,
    PaymentMove,
    PaymentSettings,
    ReconciliationDrift,
    WebhookEvent,
    WritebackAttempt,
    WritebackOutbox,
)
from .services import ledger, webhook_events, writeback


class ReadOnlyAdmin(PartnerColumnMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentSettings)
class PaymentSettingsAdmin(ReadOnlyAdmin):
    list_display = [
        "partner_name",
        "endpoint_id",
        "allow_overpayment",
        "rejected_count",
        "last_rejected_at",
        "rotated_at",
    ]
    # No secret field, ever: the whsec_ secrets are shown once to the partner, never here.
    fields = [
        "partner",
        "endpoint_id",
        "allow_overpayment",
        "rotated_at",
        "previous_secret_expires_at",
        "rejected_count",
        "last_rejected_at",
        "last_rejected_reason",
        "created_at",
    ]
    search_fields = ["partner__name", "=endpoint_id"]
    list_select_related = ["partner"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "partner_name",
        "invoice",
        "amount",
        "currency",
        "method",
        "source",
        "status",
        "received_at",
    ]
    list_filter = ["status", "source", "method"]
    search_fields = ["=processor_payment_id", "partner__name", "invoice__number"]
    list_select_related = ["partner", "invoice"]
    date_hierarchy = "received_at"


class ParkedOrFailedFilter(admin.SimpleListFilter):
    title = "needs ops"
    parameter_name = "needs_ops"

    def lookups(self, request, model_admin):
        return [("yes", "Parked or failed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(
                state__in=[WritebackOutbox.State.PARKED, WritebackOutbox.State.FAILED]
            )
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(OpsActionsMixin, ReadOnlyAdmin):
    list_display = [
        "event_id",
        "partner_name",
        "event_type",
        "status",
        "reason",
        "attempts",
        "failures",
        "received_at",
        "processed_at",
    ]
    list_filter = ["status", "reason", "event_type"]
    search_fields = ["=event_id", "=processor_payment_id", "partner__name"]
    list_select_related = ["partner"]
    date_hierarchy = "received_at"
    fields = [
        "partner",
        "signature",
        "event_id",
        "event_type",
        "processor_payment_id",
        "signed_at",
        "received_at",
        "status",
        "reason",
        "detail",
        "attempts",
        "failures",
        "last_error",
        "processed_at",
        "payment_link",
        "body",
    ]
    readonly_fields = ["signature", "payment_link"]
    actions = ["reprocess"]

    @admin.display(description="Signature")
    def signature(self, obj):
        # Only deliveries whose signature verified are stored; rejected ones are counted on
        # the partner's payment settings (rejected count, last reason).
        return "verified (Standard Webhooks)"

    @admin.display(description="Payment")
    def payment_link(self, obj):
        if obj.payment_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', change_url(obj.payment), obj.payment)

    @admin.action(
        description="Process again now (parked, received or failed events)", permissions=["ops"]
    )
    def reprocess(self, request, queryset):
        done = skipped = 0
        retryable = (
            WebhookEvent.Status.PARKED,
            WebhookEvent.Status.RECEIVED,
            WebhookEvent.Status.FAILED,
        )
        for event in queryset.select_related("partner"):
            if event.status not in retryable:
                skipped += 1
                continue
            before = event.status
            try:
                # A failed event gets a fresh budget of attempts (webhook_event_retry).
                result = webhook_events.webhook_event_retry(
                    partner=event.partner, event_id=event.pk
                )
            except Exception as exc:  # counted on the event; ops see it in last_error
                self.log_change(request, event, f"Reprocessed: {before} → error.")
                self.message_user(request, f"Event {event.pk} failed again: {exc}", messages.ERROR)
                continue
            outcome = result.status if result is not None else "gone"
            reason = f" ({result.reason})" if result is not None and result.reason else ""
            self.log_change(request, event, f"Reprocessed: {before} → {outcome}{reason}.")
            done += 1
        text = f"{done} event(s) processed again."
        if skipped:
            text += f" {skipped} skipped (only parked, received or failed events are processed)."
        self.message_user(request, text, messages.SUCCESS if done else messages.WARNING)


class AttemptInline(admin.TabularInline):
    model = WritebackAttempt
    extra = 0
    can_delete = False
    fields = [
        "started_at",
        "finished_at",
        "version",
        "paid_date",
        "outcome",
        "error_kind",
        "error",
        "retry_in_seconds",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WritebackOutbox)
class WritebackOutboxAdmin(OpsActionsMixin, ReadOnlyAdmin):
    list_display = [
        "invoice",
        "partner_name",
        "state",
        "desired_paid_date",
        "autotask_paid_date",
        "version",
        "attempts",
        "next_attempt_at",
        "last_error_kind",
        "updated_at",
    ]
    list_filter = [ParkedOrFailedFilter, "state", "last_error_kind"]
    search_fields = ["invoice__number", "=invoice__autotask_id", "partner__name"]
    list_select_related = ["invoice", "partner"]
    inlines = [AttemptInline]
    actions = ["retry", "cancel"]

    @admin.action(description="Retry now (parked, failed or cancelled rows)", permissions=["ops"])
    def retry(self, request, queryset):
        n = 0
        for outbox in queryset:
            if writeback.writeback_retry(outbox=outbox):
                n += 1
                self.log_change(request, outbox, "Write-back retried (queued again).")
        self.message_user(request, f"{n} row(s) queued again.")

    @admin.action(description="Cancel (stop sending)", permissions=["ops"])
    def cancel(self, request, queryset):
        n = 0
        for outbox in queryset:
            if writeback.writeback_cancel(outbox=outbox):
                n += 1
                self.log_change(request, outbox, "Write-back cancelled.")
        self.message_user(request, f"{n} row(s) cancelled.")


class DriftOpenFilter(admin.SimpleListFilter):
    title = "open or resolved"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "Open"), ("no", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(ReconciliationDrift)
class ReconciliationDriftAdmin(OpsActionsMixin, ReadOnlyAdmin):
    """Autotask reads that contradicted the ledger (payments/services/reconcile.py), every
    partner's; the partner sees its own on Payments → Reconciliation. Ops can move a voided
    invoice's payments to its proposed replacement (the same audited step as the partner's)."""

    list_display = [
        "invoice",
        "partner_name",
        "reason",
        "replacement",
        "autotask_value",
        "ledger_value",
        "created_at",
        "last_seen_at",
        "resolved_at",
    ]
    list_filter = [DriftOpenFilter, "reason"]
    search_fields = ["invoice__number", "=invoice__autotask_id", "partner__name"]
    list_select_related = ["invoice", "partner", "replacement"]
    date_hierarchy = "created_at"
    actions = ["move_to_replacement"]

    @admin.action(
        description="Move payments to the proposed replacement (voided after payment)",
        permissions=["ops"],
    )
    def move_to_replacement(self, request, queryset):
        moved = skipped = 0
        for drift in queryset.select_related("partner"):
            if (
                drift.reason != ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT
                or drift.resolved_at is not None
                or drift.replacement_id is None
            ):
                skipped += 1
                continue
            try:
                moves = ledger.payments_move(
                    partner=drift.partner,
                    from_invoice_id=drift.invoice_id,
                    to_invoice_id=drift.replacement_id,
                    user=request.user,
                    via="ops",
                )
            except DomainError as exc:
                self.message_user(request, f"{drift}: {exc.message}", messages.ERROR)
                continue
            moved += 1
            self.log_change(
                request, drift, f"{len(moves)} payment(s) moved to invoice {drift.replacement_id}."
            )
        self.message_user(
            request, f"{moved} invoice(s) resolved; {skipped} skipped (not open, no replacement)."
        )


@admin.register(PaymentMove)
class PaymentMoveAdmin(ReadOnlyAdmin):
    """The audit of payments moved from an invoice voided in Autotask to its replacement."""

    list_display = [
        "payment",
        "partner_name",
        "from_invoice",
        "to_invoice",
        "amount",
        "moved_by",
        "via",
        "created_at",
    ]
    list_filter = ["via"]
    search_fields = ["from_invoice__number", "to_invoice__number", "partner__name"]
    list_select_related = ["payment", "partner", "from_invoice", "to_invoice", "moved_by"]
    date_hierarchy = "created_at"
