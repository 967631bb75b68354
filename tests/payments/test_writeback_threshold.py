"""Write-back meeting Autotask's hourly threshold answered as a 500 with the threshold text
(issue 16; API.md §4: the status is UNVERIFIED, the sandbox's `500_threshold` fault and its
`threshold_status` switch). Throttling is Autotask asking us to wait: the row stays pending with
a `next_attempt_at`, however many times it is asked, and is never failed for good."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from payments.models import WritebackAttempt, WritebackOutbox
from payments.services import writeback

from . import test_writeback as base
from .test_writeback import paid_date, patches, pay_in_full

synced = base.synced  # the same synced partner fixture

pytestmark = pytest.mark.django_db


def test_threshold_500_keeps_the_row_pending_past_max_attempts_then_sends(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    throttled = writeback.MAX_ATTEMPTS + 2  # an hour of refusals outlasts any attempt budget
    db.fail_next(throttled, "500_threshold", entity="Invoices")
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for n in range(throttled):
            result = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
            assert result.outcome == "retry", (n, result)
            outbox.refresh_from_db()
            assert outbox.state == WritebackOutbox.State.PENDING
            assert outbox.last_error_kind == "throttled"
            assert outbox.next_attempt_at >= timezone.now() + timedelta(seconds=result.retry_in)
            clock.shift(result.retry_in + 0.01)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"
    outbox.refresh_from_db()
    assert (outbox.state, outbox.attempts) == (WritebackOutbox.State.DONE, 0)
    assert paid_date(db, invoice) == timezone.localdate().isoformat()
    statuses = [r["status"] for r in patches(db, invoice)]
    assert statuses == [500] * throttled + [200]
    outcomes = list(
        WritebackAttempt.objects.filter(outbox=outbox)
        .order_by("id")
        .values_list("outcome", "error_kind")
    )
    assert outcomes == [("retry", "throttled")] * throttled + [("sent", "")]


def test_threshold_500_retry_after_is_honoured(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    db.fail_next(1, "500_threshold", entity="Invoices", retry_after=90)
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        first = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
        assert first.outcome == "retry" and first.retry_in >= 90
        clock.shift(89)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == (
            "not_due"
        )
        assert len(patches(db, invoice)) == 1
        clock.shift(first.retry_in - 89 + 0.01)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"


def test_threshold_switch_500_is_retried_later_not_failed(partner_a, synced):
    """The sandbox's own threshold (switch threshold_status=500), not an injected fault: the
    hour stays spent for more than MAX_ATTEMPTS tries, then frees up."""
    db, first, invoice = synced["db"], synced["invoices"][1], synced["invoices"][0]
    db.set_switches(threshold_status=500, threshold=1)
    pay_in_full(partner_a, first)
    first_outbox = WritebackOutbox.objects.get(invoice=first)
    assert writeback.writeback_send(partner=partner_a, outbox_id=first_outbox.pk).outcome == (
        "sent"
    )  # the hour's one request is spent
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for n in range(writeback.MAX_ATTEMPTS + 1):
            result = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
            assert result.outcome == "retry", (n, result)
            outbox.refresh_from_db()
            assert (outbox.state, outbox.last_error_kind) == ("pending", "throttled")
            assert outbox.next_attempt_at > timezone.now()
            clock.shift(result.retry_in + 0.01)
        assert {r["status"] for r in patches(db, invoice)} == {500}
        db.reset_counters()  # the rolling hour has room again
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"
    assert paid_date(db, invoice) == timezone.localdate().isoformat()
