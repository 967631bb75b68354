"""Ops views of payments: parked webhook events, the write-back outbox (retry/cancel) and its
attempts. Read-only; secrets are never shown (the settings admin lists no secret field)."""

from django.contrib import admin, messages

from . import services, writeback
from .models import Payment, PaymentSettings, WebhookEvent, WritebackAttempt, WritebackOutbox


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentSettings)
class PaymentSettingsAdmin(ReadOnlyAdmin):
    list_display = ["partner", "endpoint_id", "allow_overpayment", "rejected_count", "rotated_at"]
    fields = [
        "partner",
        "endpoint_id",
        "allow_overpayment",
        "rotated_at",
        "previous_secret_expires_at",
        "rejected_count",
        "last_rejected_at",
        "last_rejected_reason",
    ]
    search_fields = ["partner__name", "endpoint_id"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "partner",
        "invoice",
        "amount",
        "method",
        "source",
        "status",
        "received_at",
    ]
    list_filter = ["status", "source", "method"]
    search_fields = ["processor_payment_id", "partner__name", "invoice__number"]
    list_select_related = ["partner", "invoice"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "partner", "event_type", "status", "reason", "received_at"]
    list_filter = ["status", "reason", "event_type"]
    search_fields = ["event_id", "processor_payment_id", "partner__name"]
    list_select_related = ["partner"]
    actions = ["reprocess"]

    @admin.action(description="Process again now (parked or received events)")
    def reprocess(self, request, queryset):
        done = 0
        for event in queryset.filter(status__in=["parked", "received"]).select_related("partner"):
            services.webhook_event_process(partner=event.partner, event_id=event.pk)
            done += 1
        messages.info(request, f"{done} event(s) processed again.")


class AttemptInline(admin.TabularInline):
    model = WritebackAttempt
    extra = 0
    can_delete = False
    fields = [
        "started_at",
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


@admin.register(WritebackOutbox)
class WritebackOutboxAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice",
        "partner",
        "state",
        "desired_paid_date",
        "autotask_paid_date",
        "version",
        "attempts",
        "next_attempt_at",
        "last_error_kind",
    ]
    list_filter = ["state", "last_error_kind"]
    search_fields = ["invoice__number", "partner__name"]
    list_select_related = ["invoice", "partner"]
    inlines = [AttemptInline]
    actions = ["retry", "cancel"]

    @admin.action(description="Retry now (parked, failed or cancelled rows)")
    def retry(self, request, queryset):
        n = sum(writeback.writeback_retry(outbox=o) for o in queryset)
        messages.info(request, f"{n} row(s) queued again.")

    @admin.action(description="Cancel (stop sending)")
    def cancel(self, request, queryset):
        n = sum(writeback.writeback_cancel(outbox=o) for o in queryset)
        messages.info(request, f"{n} row(s) cancelled.")
