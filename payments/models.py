"""Payments, processor webhooks and the Autotask write-back outbox.

Invoice balances are not stored here: `Invoice.paid_here` is the sum of this partner's
succeeded payments of the invoice, recomputed by payments/services/ledger.py under a row lock on
the invoice, and the invoice's `outstanding`/`status` are generated from it by PostgreSQL.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from config.encryption import EncryptedTextField
from invoices.models import MONEY, Invoice
from partners.models import Partner, PartnerOwnedModel, PartnerOwnedQuerySet


def new_endpoint_id() -> str:
    # Opaque, unguessable, URL-safe; it is not a secret (the signature is), but guessing one
    # should not even find an endpoint.
    return f"ep_{secrets.token_urlsafe(18)}"


class PaymentSettings(PartnerOwnedModel):
    """A partner's payment settings: its processor webhook endpoint and secret(s), and whether
    a payment may exceed the outstanding balance.

    The secret is shown once when created or rotated. During a rotation the previous secret
    keeps verifying until `previous_secret_expires_at` (both verify meanwhile, RELIABILITY WH-3).
    """

    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, related_name="+")
    endpoint_id = models.CharField(max_length=40, unique=True, default=new_endpoint_id)
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    allow_overpayment = models.BooleanField(
        default=False,
        help_text="Accept payments larger than the outstanding balance (else they are refused "
        "by hand and parked when they come from the processor).",
    )
    # Rejected deliveries write nothing but these (WH-2: row counts unchanged).
    rejected_count = models.PositiveBigIntegerField(default=0)
    last_rejected_at = models.DateTimeField(null=True, blank=True)
    last_rejected_reason = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "payment settings"

    def __str__(self):
        return f"Payment settings of partner {self.partner_id}"


class PaymentMethod(models.TextChoices):
    CARD = "card", "Card"
    ACH = "ach", "ACH"
    OTHER = "other", "Other"


class PaymentStatus(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    REFUNDED = "refunded", "Refunded"
    DELETED = "deleted", "Deleted"


# Order of a processor payment's states: a later state never goes back to an earlier one, so
# events applied in any order end in the same state (a late "succeeded" after a refund or a
# deletion changes nothing). Ties are broken by the processor's version.
STATUS_RANK = {PaymentStatus.SUCCEEDED: 1, PaymentStatus.REFUNDED: 2, PaymentStatus.DELETED: 3}


class Payment(PartnerOwnedModel):
    """A payment of an invoice: from the processor (webhook) or recorded by hand.

    Only succeeded payments count towards `Invoice.paid_here`. A refund or deletion that arrives
    before its payment creates the row directly in that state (a tombstone, possibly without an
    invoice), so the late "succeeded" finds it and counts nothing.
    """

    class Source(models.TextChoices):
        PROCESSOR = "processor", "Processor"
        MANUAL = "manual", "Recorded by hand"

    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    method = models.CharField(
        max_length=10, choices=PaymentMethod.choices, default=PaymentMethod.OTHER
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    processor_payment_id = models.CharField(max_length=255, blank=True)
    processor_version = models.BigIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=PaymentStatus.choices, default=PaymentStatus.SUCCEEDED
    )
    note = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField()
    refunded_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "processor_payment_id"],
                condition=~Q(processor_payment_id=""),
                name="payment_unique_processor_id_per_partner",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(invoice__isnull=False),
                name="payment_succeeded_has_invoice",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "invoice", "status"]),
            models.Index(fields=["partner", "-received_at"]),
        ]

    def __str__(self):
        return f"Payment {self.pk} {self.amount} {self.currency} ({self.status})"


class WebhookEvent(PartnerOwnedModel):
    """One processor delivery whose signature verified, stored raw before anything else.

    `(partner, event_id)` is unique and kept permanently (RELIABILITY §1.9): a retry days later
    is still a duplicate. Rejected deliveries (bad signature, too old) are never stored.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        PARKED = "parked", "Parked for ops"
        INVALID = "invalid", "Invalid (kept raw)"
        IGNORED = "ignored", "Ignored (unknown type)"
        FAILED = "failed", "Failed (parked for ops)"

    class Reason(models.TextChoices):
        NONE = "", "—"
        MALFORMED = "malformed", "Malformed JSON or fields"
        UNKNOWN_TYPE = "unknown_type", "Unknown event type"
        UNKNOWN_INVOICE = "unknown_invoice", "Unknown invoice"
        FOREIGN_INVOICE = "foreign_invoice", "Another partner's invoice"
        AMBIGUOUS_INVOICE = "ambiguous_invoice", "Several invoices with that number"
        ARCHIVED_INVOICE = "archived_invoice", "Archived invoice"
        VOID_INVOICE = "void_invoice", "Voided invoice"
        AMOUNT = "amount_exceeds_outstanding", "Amount exceeds the outstanding balance"
        CURRENCY = "currency_mismatch", "Currency differs from the invoice"
        PAID_IN_AUTOTASK = "paid_in_autotask", "Invoice already paid in Autotask"
        PROCESSING_ERROR = "processing_error", "Processing failed repeatedly"

    settings = models.ForeignKey(PaymentSettings, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=60, blank=True)
    processor_payment_id = models.CharField(max_length=255, blank=True)
    body = models.TextField(help_text="The raw body as received (at most 64 KiB).")
    signed_at = models.DateTimeField(help_text="The webhook-timestamp header.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    reason = models.CharField(max_length=40, choices=Reason.choices, blank=True, default="")
    detail = models.CharField(max_length=500, blank=True)
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    attempts = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(
        default=0,
        help_text="Processing errors in a row; at MAX_PROCESSING_FAILURES the event is failed "
        "(parked for ops, retried only by an admin action).",
    )
    last_error = models.CharField(max_length=1000, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "event_id"], name="webhook_event_unique_id_per_partner"
            )
        ]
        indexes = [
            models.Index(fields=["partner", "status"]),
            models.Index(fields=["partner", "-received_at"]),
        ]

    def __str__(self):
        return f"{self.event_type or 'event'} {self.event_id} ({self.status})"

    @property
    def partner_reason_display(self) -> str:
        """The reason as a partner may see it: another partner's invoice reads "Unknown
        invoice" (no oracle for other tenants' ids); ops see the real reason in the admin."""
        if self.reason == self.Reason.FOREIGN_INVOICE:
            return self.Reason.UNKNOWN_INVOICE.label
        return self.get_reason_display()


class WritebackOutbox(PartnerOwnedModel):
    """The paidDate Autotask should have for one invoice (one row per invoice).

    Payments write the *desired* state and bump `version`; the relay sends only the latest
    desired state (RELIABILITY SY-7) and records it as sent only if the version it sent is
    still the current one. `autotask_paid_date` is what we last set in Autotask ourselves.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        PARKED = "parked", "Parked (needs attention)"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, related_name="writeback")
    desired_paid_date = models.DateField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    sent_version = models.PositiveIntegerField(default=0)
    autotask_paid_date = models.DateField(null=True, blank=True)
    ever_sent = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts at the current version.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error_kind = models.CharField(max_length=40, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "write-back outbox entry"
        verbose_name_plural = "write-back outbox entries"
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self):
        return f"Write-back of invoice {self.invoice_id} ({self.state})"


class WritebackAttempt(PartnerOwnedModel):
    """One PATCH attempt of an outbox row, written before sending and completed after."""

    class Outcome(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        RETRY = "retry", "Will retry"
        PARKED = "parked", "Parked"
        FAILED = "failed", "Failed"
        # The PATCH was accepted but the read-back showed another paidDate (issue 16).
        MISMATCH = "mismatch", "Not applied (read back)"

    outbox = models.ForeignKey(
        WritebackOutbox, on_delete=models.CASCADE, related_name="attempts_log"
    )
    version = models.PositiveIntegerField()
    paid_date = models.DateField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.SENDING)
    error_kind = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    retry_in_seconds = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "write-back attempt"
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"Attempt {self.pk} of outbox {self.outbox_id}: {self.outcome}"


class ReconciliationDrift(PartnerOwnedModel):
    """An Autotask read that contradicts our ledger after our write-back settled: recorded
    here with its reason, never adopted (payments/services/reconcile.py). One open row per
    invoice and reason (a daily run seeing it again only moves `last_seen_at`); a later read
    that agrees with the ledger again resolves it."""

    class Reason(models.TextChoices):
        PAID_DATE_CLEARED = (
            "paid_date_cleared_in_autotask",
            "paidDate cleared in Autotask while payments here cover the invoice",
        )
        PAID_DATE_CHANGED = (
            "paid_date_changed_in_autotask",
            "paidDate in Autotask differs from the one we wrote",
        )
        PAID_DATE_NOT_CLEARED = (
            "paid_date_not_cleared",
            "paidDate we cleared is still (or again) set in Autotask",
        )
        WRITEBACK_NOT_APPLIED = (
            "writeback_not_applied",
            "Autotask accepted our paidDate but reading it back shows another value",
        )
        VOIDED_AFTER_PAYMENT = (
            "voided_after_payment",
            "Voided in Autotask after payment here",
        )

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="drifts")
    reason = models.CharField(max_length=40, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    autotask_value = models.CharField(
        max_length=40, blank=True, help_text="paidDate as Autotask showed it (empty: none)."
    )
    ledger_value = models.CharField(
        max_length=40, blank=True, help_text="paidDate our ledger says Autotask has (empty: none)."
    )
    run_id = models.BigIntegerField(null=True, blank=True, help_text="The sync run that read it.")
    replacement = models.ForeignKey(
        Invoice,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Voided after payment: the invoice Autotask issued in its place, if found.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = PartnerOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "reason"],
                condition=Q(resolved_at__isnull=True),
                name="drift_one_open_per_invoice_reason",
            )
        ]
        indexes = [models.Index(fields=["partner", "resolved_at"])]

    def __str__(self):
        return f"Drift of invoice {self.invoice_id}: {self.reason}"


class PaymentMove(PartnerOwnedModel):
    """Audit entry: a payment moved from one invoice to another (a voided invoice's payments to
    its replacement, payments/services/ledger.py `payments_move`). Never edited or deleted."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="moves")
    from_invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="+")
    to_invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY)
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=20, help_text="dashboard, api or ops.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PartnerOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Payment {self.payment_id} moved {self.from_invoice_id} -> {self.to_invoice_id}"
