"""Test helpers of the payments app."""

from __future__ import annotations

from django.utils import timezone

from payments.models import Payment, WritebackOutbox
from payments.services import ledger
from payments.services.writeback import SendResult, writeback_send


def writeback_drain(*, partner, max_rounds: int = 10, client_factory=None) -> list[SendResult]:
    """Send every due row of a partner in this process (tests)."""
    results = []
    for _ in range(max_rounds):
        ids = list(
            WritebackOutbox.objects.for_partner(partner)
            .filter(state=WritebackOutbox.State.PENDING, next_attempt_at__lte=timezone.now())
            .values_list("id", flat=True)
        )
        if not ids:
            break
        for outbox_id in ids:
            results.append(
                writeback_send(partner=partner, outbox_id=outbox_id, client_factory=client_factory)
            )
    return results


def at_paid_date(db, invoice) -> str | None:
    value = db.get_invoice(invoice.autotask_id)["paidDate"]
    return value[:10] if value else None


def pay_in_full(partner, invoice) -> Payment:
    invoice.refresh_from_db()
    return ledger.payment_record(partner=partner, invoice_id=invoice.pk, amount=invoice.outstanding)
