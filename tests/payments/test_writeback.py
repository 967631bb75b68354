"""Write-back of paidDate through the outbox, against the Autotask sandbox over real HTTP
(R4, R9; RELIABILITY SY-6/SY-7 in small)."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from config.api import DomainError
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from payments import tasks
from payments.models import WritebackAttempt, WritebackOutbox
from payments.services import ledger, payment_settings, writeback

from .helpers import writeback_drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(partner_a, connect, run_now, autotask_sandbox):
    conn = connect(partner_a)
    run = run_now(conn.first_run)
    assert run.status == "succeeded", run.error_message
    db = autotask_sandbox.db
    open_invoices = list(
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id")
    )
    assert len(open_invoices) >= 4
    db.reset_counters()
    return {"db": db, "invoices": open_invoices, "connection": conn}


def paid_date(db, invoice):
    value = db.get_invoice(invoice.autotask_id)["paidDate"]
    return value[:10] if value else None


def patches(db, invoice=None):
    rows = db.requests(entity="Invoices", method="PATCH")
    if invoice is not None:
        rows = [r for r in rows if (r.get("body") or {}).get("id") == invoice.autotask_id]
    return rows


def pay_in_full(partner, invoice):
    invoice.refresh_from_db()
    return ledger.payment_record(partner=partner, invoice_id=invoice.pk, amount=invoice.outstanding)


def test_full_payment_sets_paid_date_and_deleting_it_clears_it(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    payment = pay_in_full(partner_a, invoice)
    today = timezone.localdate().isoformat()
    results = writeback_drain(partner=partner_a)
    assert [r.outcome for r in results] == ["sent"]
    assert paid_date(db, invoice) == today
    body = patches(db, invoice)[0]["body"]
    assert body == {"id": invoice.autotask_id, "paidDate": f"{today}T00:00:00Z"}

    ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.outstanding == invoice.total - invoice.credits
    writeback_drain(partner=partner_a)
    assert paid_date(db, invoice) is None
    assert len(patches(db, invoice)) == 2
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert (outbox.state, outbox.desired_paid_date, outbox.autotask_paid_date) == (
        "done",
        None,
        None,
    )
    assert list(
        WritebackAttempt.objects.filter(outbox=outbox)
        .order_by("id")
        .values_list("outcome", "paid_date")
    ) == [("sent", timezone.localdate()), ("sent", None)]


def test_partial_payment_sends_nothing(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("0.01"))
    assert writeback_drain(partner=partner_a) == []
    assert patches(db) == []


def test_only_the_latest_state_is_sent(partner_a, synced):
    """SY-7 in small: pay → delete → pay before the relay runs = one PATCH with the date."""
    db, invoice = synced["db"], synced["invoices"][0]
    p = pay_in_full(partner_a, invoice)
    ledger.payment_delete(partner=partner_a, payment_id=p.pk)
    assert WritebackOutbox.objects.get(invoice=invoice).state == "done"  # nothing to send
    pay_in_full(partner_a, invoice)
    writeback_drain(partner=partner_a)
    assert len(patches(db, invoice)) == 1
    assert paid_date(db, invoice) == timezone.localdate().isoformat()


def test_pay_then_delete_before_relay_sends_nothing(partner_a, synced):
    db = synced["db"]
    for invoice in synced["invoices"][:3]:
        p = pay_in_full(partner_a, invoice)
        ledger.payment_delete(partner=partner_a, payment_id=p.pk)
    writeback_drain(partner=partner_a)
    assert patches(db) == []
    assert all(paid_date(db, i) is None for i in synced["invoices"][:3])


def test_503s_are_retried_with_backoff_and_end_right_with_at_most_3_patches(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    db.fail_next(2, "503_html", entity="Invoices")
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(5):
            result = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
            if result.outcome == "sent":
                break
            assert result.outcome == "retry" and 0 <= result.retry_in <= 2 * 2**2
            # not before its time: the relay refuses to send early
            early = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
            assert early.outcome in ("not_due", "sent")
            if early.outcome == "sent":
                break
            clock.shift(result.retry_in + 0.01)
    assert paid_date(db, invoice) == timezone.localdate().isoformat()
    assert len(patches(db, invoice)) == 3
    outcomes = list(WritebackAttempt.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["retry", "retry", "sent"]


def test_429_retry_after_is_honoured_before_the_next_patch(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    db.fail_next(1, "429", entity="Invoices", retry_after=120)
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        first = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
        assert first.outcome == "retry" and first.retry_in >= 120
        outbox.refresh_from_db()
        assert outbox.next_attempt_at >= timezone.now() + timedelta(seconds=120)
        clock.shift(119)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == (
            "not_due"
        )
        assert writeback_drain(partner=partner_a) == []
        assert len(patches(db, invoice)) == 1
        clock.shift(first.retry_in - 119 + 0.01)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"
    assert len(patches(db, invoice)) == 2
    assert paid_date(db, invoice) == timezone.localdate().isoformat()


def test_long_retry_after_is_left_to_the_sweep_not_a_countdown(partner_a, synced, settings):
    db, invoice = synced["db"], synced["invoices"][0]
    db.fail_next(1, "429", entity="Invoices", retry_after=500)
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    result = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
    assert result.retry_in >= 500 > writeback.max_countdown()


def test_auth_error_parks_the_row_and_flags_the_connection(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    conn = AutotaskConnection.objects.get(partner=partner_a)
    conn.secret = "not-the-secret"
    conn.save()
    pay_in_full(partner_a, invoice)
    results = writeback_drain(partner=partner_a)
    assert [r.outcome for r in results] == ["parked"]
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert outbox.state == "parked" and outbox.last_error_kind == "auth:bad_secret"
    conn.refresh_from_db()
    assert conn.status == "needs_attention"
    assert paid_date(db, invoice) is None
    # ops fix the secret and retry
    conn.secret = db.secret
    conn.save()
    assert writeback.writeback_retry(outbox=outbox)
    writeback_drain(partner=partner_a)
    assert paid_date(db, invoice) == timezone.localdate().isoformat()


def test_ops_cancel_stops_sending(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert writeback.writeback_cancel(outbox=outbox)
    assert writeback_drain(partner=partner_a) == []
    assert patches(db) == []


def test_a_claimed_row_is_not_sent_by_a_second_relay(partner_a, synced):
    import uuid

    db, invoice = synced["db"], synced["invoices"][0]
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert writeback._claim(partner_a, outbox.pk, uuid.uuid4())
    assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "not_claimed"
    assert patches(db) == []
    # the first relay died: after the lease another relay takes over
    with time_machine.travel(timezone.now() + writeback.lease() + timedelta(seconds=1)):
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"
    assert len(patches(db, invoice)) == 1


def test_state_changed_while_sending_is_sent_again(partner_a, synced, monkeypatch):
    db, invoice = synced["db"], synced["invoices"][0]
    payment = pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    real = writeback._client_for

    def client_factory(connection, **options):
        client = real(connection, **options)
        original = client.set_invoice_paid_date

        def patched(invoice_id, paid):
            result = original(invoice_id, paid)
            # the payment is deleted while the PATCH is in flight
            ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
            return result

        client.set_invoice_paid_date = patched
        return client

    sent = []
    monkeypatch.setattr(writeback, "enqueue_send", lambda o, countdown=None: sent.append(o.pk))
    first = writeback.writeback_send(
        partner=partner_a, outbox_id=outbox.pk, client_factory=client_factory
    )
    assert first.outcome == "sent" and first.again
    writeback_drain(partner=partner_a)
    assert paid_date(db, invoice) is None
    assert len(patches(db, invoice)) == 2


def test_sweep_enqueues_due_rows_only(partner_a, synced, monkeypatch):
    pay_in_full(partner_a, synced["invoices"][0])
    pay_in_full(partner_a, synced["invoices"][1])
    second = WritebackOutbox.objects.get(invoice=synced["invoices"][1])
    WritebackOutbox.objects.filter(pk=second.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=30)
    )
    calls = []
    monkeypatch.setattr(tasks.send, "delay", lambda *a: calls.append(a))
    assert writeback.writeback_sweep() == 1
    first = WritebackOutbox.objects.get(invoice=synced["invoices"][0])
    assert calls == [(partner_a.pk, first.pk)]


def test_invoice_paid_in_autotask_is_never_written(partner_a, synced, run_now, new_run):
    db, invoice = synced["db"], synced["invoices"][0]
    db.set_invoice_paid_date(invoice.autotask_id, "2026-01-05")
    run_now(new_run(partner_a, "unpaid"))
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is not None and invoice.status == "paid"
    payment_settings.payment_settings_update(partner=partner_a, allow_overpayment=True)
    with pytest.raises(DomainError, match="already paid in Autotask"):
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("1.00"))
    assert not WritebackOutbox.objects.filter(invoice=invoice).exists()
    assert patches(db) == []


def test_a_payment_change_during_retry_after_waits_it_out(partner_a, synced):
    """SY-6 in small (the bug SY-6 found): paid and sent, deleted, the clear meets a 429 with
    Retry-After 120; paid again (back-dated, a new paidDate) during the wait. The new version
    is still not sent before the Retry-After elapsed."""
    db, invoice = synced["db"], synced["invoices"][0]
    payment = pay_in_full(partner_a, invoice)
    writeback_drain(partner=partner_a)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
        db.fail_next(1, "429", entity="Invoices", retry_after=120)
        first = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
        assert first.outcome == "retry" and first.retry_in >= 120
        clock.shift(10)
        invoice.refresh_from_db()
        ledger.payment_record(
            partner=partner_a,
            invoice_id=invoice.pk,
            amount=invoice.outstanding,
            received_at=timezone.now() - timedelta(days=3),
        )
        outbox.refresh_from_db()
        assert outbox.state == "pending" and outbox.next_attempt_at > timezone.now()
        early = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
        assert early.outcome == "not_due" and early.retry_in >= 109
        assert writeback_drain(partner=partner_a) == []
        assert len(patches(db, invoice)) == 2  # the payment's, the throttled clear
        clock.shift(first.retry_in - 10 + 0.01)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"
    assert paid_date(db, invoice) == (timezone.localdate() - timedelta(days=3)).isoformat()


def test_a_relay_that_lost_its_claim_sends_nothing(partner_a, synced):
    """The claim is renewed, fenced by its token, just before each request: a relay paused past
    the lease (taken over meanwhile) sends nothing and leaves the row to the new owner."""
    db, invoice = synced["db"], synced["invoices"][0]
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    real = writeback._client_for
    taken_over = []

    def client_factory(connection, **options):
        # the relay is paused here, past its lease; another relay claims the row
        with time_machine.travel(timezone.now() + writeback.lease() + timedelta(seconds=1)):
            import uuid

            token = uuid.uuid4()
            assert writeback._claim(partner_a, outbox.pk, token)
            taken_over.append(token)
        return real(connection, **options)

    result = writeback.writeback_send(
        partner=partner_a, outbox_id=outbox.pk, client_factory=client_factory
    )
    assert result.outcome == "not_claimed"
    assert patches(db) == []
    outbox.refresh_from_db()
    assert (outbox.state, outbox.claim_token) == ("sending", taken_over[0])
    attempt = WritebackAttempt.objects.get(outbox=outbox)
    assert (attempt.outcome, attempt.error_kind) == ("retry", "lease_lost")
