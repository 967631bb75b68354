"""An invoice's payments: payments recorded and deleted by hand, and the invoice recompute that
every change to an invoice's payments (webhook or manual) ends in.

Locking order, everywhere, so that nothing deadlocks: webhook event row → per-payment advisory
lock (transaction-scoped) → payment row → invoice row → outbox row. Every change to the
payments of an invoice ends in `_invoice_recompute()`, which sets `Invoice.paid_here` to the
sum of its succeeded payments under the invoice's row lock and updates the write-back outbox in
the same transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.api import DomainError
from invoices.models import Invoice

from ..models import Payment, PaymentStatus, WebhookEvent
from .payment_settings import payment_settings_get
from .writeback import outbox_update

log = logging.getLogger(__name__)

Reason = WebhookEvent.Reason


def _lock_invoice(invoice_id: int, *, partner) -> Invoice:
    return Invoice.objects.for_partner(partner).select_for_update().get(pk=invoice_id)


def _unpayable_reason(
    invoice: Invoice, *, amount: Decimal, currency: str, allow_over: bool, already: Decimal
) -> str:
    """Why `amount` cannot be applied to the (locked) invoice, or "". `already` is the part of
    the amount already counted in paid_here (a changed amount of the same payment)."""
    if invoice.archived_at is not None:
        return Reason.ARCHIVED_INVOICE
    if invoice.voided:
        return Reason.VOID_INVOICE
    if invoice.paid_in_autotask_on is not None:
        # Autotask's own paidDate (ours is never kept there: payments/services/reconcile.py).
        return Reason.PAID_IN_AUTOTASK
    if currency and currency.upper() != invoice.currency.upper():
        return Reason.CURRENCY
    if not allow_over and amount > invoice.outstanding + already:
        return Reason.AMOUNT
    return ""


def _partner_date(partner, when: datetime):
    try:
        tz = ZoneInfo(partner.time_zone or "UTC")
    except Exception:  # an unknown zone name: fall back to UTC rather than fail a payment
        tz = ZoneInfo("UTC")
    return timezone.localtime(when, tz).date()


def _invoice_recompute(invoice_id: int, *, partner) -> Invoice:
    """paid_here = the sum of succeeded payments, under the invoice's row lock (already held
    by the caller), then the write-back outbox follows the invoice's new state."""
    # Two statements (an UPDATE with the sum as a subquery, a SELECT with the latest payment
    # date as one): this runs for every payment, webhook or manual.
    succeeded = Payment.objects.for_partner(partner).filter(
        invoice_id=OuterRef("pk"), status=PaymentStatus.SUCCEEDED
    )
    paid_here = Invoice._meta.get_field("paid_here")
    total = succeeded.values("invoice_id").annotate(s=Sum("amount")).values("s")
    Invoice.objects.for_partner(partner).filter(pk=invoice_id).update(
        paid_here=Coalesce(Subquery(total, output_field=paid_here), Value(Decimal("0.00"))),
        updated_at=timezone.now(),
    )
    invoice = (
        Invoice.objects.for_partner(partner)
        .annotate(
            last_paid_at=Subquery(succeeded.order_by("-received_at").values("received_at")[:1])
        )
        .get(pk=invoice_id)
    )
    last = invoice.last_paid_at
    paid_on = _partner_date(partner, last) if last else timezone.localdate()
    outbox_update(invoice=invoice, paid_on=paid_on)
    return invoice


# --- payments by hand -------------------------------------------------------------------------


def payment_record(
    *,
    partner,
    invoice_id: int,
    amount: Decimal,
    method: str = "other",
    received_at: datetime | None = None,
    note: str = "",
    actor=None,
) -> Payment:
    """A payment recorded by a partner user (dashboard or API)."""
    if amount is None or amount <= 0:
        raise DomainError("The amount must be positive.", code="invalid_amount")
    settings_obj = payment_settings_get(partner=partner)
    allow_over = bool(settings_obj and settings_obj.allow_overpayment)
    with transaction.atomic():
        if not Invoice.objects.for_partner(partner).filter(pk=invoice_id).exists():
            raise DomainError("No such invoice.", code="not_found", status_code=404)
        invoice = _lock_invoice(invoice_id, partner=partner)
        reason = _unpayable_reason(
            invoice, amount=amount, currency="", allow_over=allow_over, already=Decimal(0)
        )
        if reason == Reason.ARCHIVED_INVOICE:
            raise DomainError(
                "Archived invoices cannot be paid.", code="invoice_archived", status_code=409
            )
        if reason == Reason.VOID_INVOICE:
            raise DomainError(
                "Voided invoices cannot be paid.", code="invoice_void", status_code=409
            )
        if reason == Reason.PAID_IN_AUTOTASK:
            raise DomainError(
                "This invoice is already paid in Autotask: it cannot take a payment here.",
                code="invoice_paid_in_autotask",
                status_code=409,
            )
        if reason == Reason.AMOUNT:
            raise DomainError(
                f"The amount exceeds the outstanding balance ({invoice.outstanding}).",
                code="amount_exceeds_outstanding",
                extra={"outstanding": str(invoice.outstanding)},
            )
        payment = Payment.objects.create(
            partner=partner,
            invoice=invoice,
            amount=amount,
            currency=invoice.currency,
            method=method,
            source=Payment.Source.MANUAL,
            status=PaymentStatus.SUCCEEDED,
            received_at=received_at or timezone.now(),
            note=note[:255],
            created_by=actor,
        )
        _invoice_recompute(invoice.pk, partner=partner)
    return payment


def payment_delete(*, partner, payment_id: int, actor=None) -> Payment:
    """Delete a payment (kept as a row with status "deleted"): the invoice re-opens here and,
    if we had marked it paid in Autotask, the outbox clears paidDate (R9). Idempotent."""
    with transaction.atomic():
        payment = (
            Payment.objects.for_partner(partner).select_for_update().filter(pk=payment_id).first()
        )
        if payment is None:
            raise DomainError("No such payment.", code="not_found", status_code=404)
        if payment.status == PaymentStatus.DELETED:
            return payment
        if payment.invoice_id is not None:
            invoice = _lock_invoice(payment.invoice_id, partner=partner)
            if invoice.archived_at is not None:
                raise DomainError(
                    "The invoice is archived: unarchive it to change its payments.",
                    code="invoice_archived",
                    status_code=409,
                )
        payment.status = PaymentStatus.DELETED
        payment.deleted_at = timezone.now()
        payment.save(update_fields=["status", "deleted_at", "updated_at"])
        if payment.invoice_id is not None:
            _invoice_recompute(payment.invoice_id, partner=partner)
    log.info("payment %s deleted by user %s", payment.pk, getattr(actor, "pk", None))
    return payment
