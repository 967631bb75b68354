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
from django.db.models import Max, Sum
from django.utils import timezone

from config.api import DomainError
from invoices.models import Invoice

from ..models import Payment, PaymentMove, PaymentStatus, ReconciliationDrift, WebhookEvent
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


def _invoice_recompute(invoice_id: int, *, partner, invoice: Invoice | None = None) -> Invoice:
    """paid_here = the sum of succeeded payments, under the invoice's row lock (already held
    by the caller), then the write-back outbox follows the invoice's new state.

    `invoice` is the caller's locked instance, when it has one: it is updated in place instead
    of being read again. Two statements per payment (one aggregate: the sum and the latest
    payment time; one UPDATE), as this runs for every payment, webhook or manual."""
    totals = (
        Payment.objects.for_partner(partner)
        .filter(invoice_id=invoice_id, status=PaymentStatus.SUCCEEDED)
        .aggregate(total=Sum("amount"), last=Max("received_at"))
    )
    paid_here = totals["total"] if totals["total"] is not None else Decimal("0.00")
    now = timezone.now()
    Invoice.objects.for_partner(partner).filter(pk=invoice_id).update(
        paid_here=paid_here, updated_at=now
    )
    if invoice is None:
        invoice = Invoice.objects.for_partner(partner).get(pk=invoice_id)
    else:
        invoice.paid_here, invoice.updated_at = paid_here, now
        # `outstanding` and `status` are generated columns: dropped from the instance, so a
        # caller that reads them loads PostgreSQL's new value (never a stale one).
        for name in ("outstanding", "status"):
            invoice.__dict__.pop(name, None)
    if invoice.voided:
        return invoice  # a voided invoice's paidDate is never written (reconcile.py, rule 5)
    last = totals["last"]
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
        _invoice_recompute(invoice.pk, partner=partner, invoice=invoice)
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
        invoice = None
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
            _invoice_recompute(payment.invoice_id, partner=partner, invoice=invoice)
    log.info("payment %s deleted by user %s", payment.pk, getattr(actor, "pk", None))
    return payment


# --- void and re-issue: moving payments to the replacement -------------------------------------


def payments_move(
    *, partner, from_invoice_id: int, to_invoice_id: int, user=None, via: str = "dashboard"
) -> list[PaymentMove]:
    """Move the succeeded payments of an invoice voided in Autotask to the invoice issued in its
    place (payments/services/reconcile.py, rule 5), in one transaction: one `PaymentMove` audit
    row per payment, both invoices recomputed (the write-back follows the new invoice; the
    voided one's paidDate is never written), its `voided_after_payment` drift resolved.

    Refused with a reason (409) unless the source is voided in Autotask and the target is an
    open Autotask invoice of the same customer and currency, not archived, not paid in
    Autotask. The target may end up overpaid (a re-issue with a lower total): the money was
    received, it is never dropped; the partner refunds the difference if they choose.
    Idempotent: a second call finds no payment left to move and changes nothing."""
    if from_invoice_id == to_invoice_id:
        raise DomainError("Choose another invoice to move the payments to.", code="same_invoice")
    with transaction.atomic():
        found = set(
            Invoice.objects.for_partner(partner)
            .filter(pk__in=[from_invoice_id, to_invoice_id])
            .values_list("pk", flat=True)
        )
        if found != {from_invoice_id, to_invoice_id}:
            raise DomainError("No such invoice.", code="not_found", status_code=404)
        # Both invoice rows locked in id order (the ledger's lock order within one level).
        locked = {
            inv.pk: inv
            for inv in Invoice.objects.for_partner(partner)
            .select_for_update()
            .filter(pk__in=[from_invoice_id, to_invoice_id])
            .order_by("pk")
        }
        source, target = locked[from_invoice_id], locked[to_invoice_id]
        _move_refusal(source, target)
        payments = list(
            Payment.objects.for_partner(partner)
            .select_for_update()
            .filter(invoice_id=source.pk, status=PaymentStatus.SUCCEEDED)
            .order_by("pk")
        )
        moves = [
            PaymentMove(
                partner=partner,
                payment=p,
                from_invoice=source,
                to_invoice=target,
                amount=p.amount,
                moved_by=user if getattr(user, "pk", None) else None,
                via=via[:20],
            )
            for p in payments
        ]
        if payments:
            PaymentMove.objects.for_partner(partner).bulk_create(moves)
            Payment.objects.for_partner(partner).filter(pk__in=[p.pk for p in payments]).update(
                invoice=target, updated_at=timezone.now()
            )
            _invoice_recompute(source.pk, partner=partner, invoice=source)
            _invoice_recompute(target.pk, partner=partner, invoice=target)
        ReconciliationDrift.objects.for_partner(partner).filter(
            invoice_id=source.pk,
            reason=ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT,
            resolved_at__isnull=True,
        ).update(resolved_at=timezone.now(), replacement=target)
    log.info(
        "%d payments of invoice %s moved to invoice %s by user %s via %s",
        len(moves),
        source.pk,
        target.pk,
        getattr(user, "pk", None),
        via,
    )
    return moves


def _move_refusal(source: Invoice, target: Invoice) -> None:
    def refuse(message: str, code: str) -> None:
        raise DomainError(message, code=code, status_code=409)

    if not source.voided:
        refuse("Payments move only from an invoice voided in Autotask.", "invoice_not_void")
    if target.voided:
        refuse("The invoice to move them to is voided too.", "target_void")
    if target.source != source.source or target.autotask_id is None:
        refuse("Move them to the invoice Autotask issued in its place.", "target_not_autotask")
    if target.customer_id != source.customer_id:
        refuse("The invoice to move them to belongs to another customer.", "target_customer")
    if target.currency.upper() != source.currency.upper():
        refuse("The invoice to move them to is in another currency.", "target_currency")
    if target.archived_at is not None:
        refuse("The invoice to move them to is archived: unarchive it first.", "target_archived")
    if target.paid_in_autotask_on is not None:
        refuse(
            "The invoice to move them to is already paid in Autotask.", "target_paid_in_autotask"
        )
