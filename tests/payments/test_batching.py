"""Batched webhook processing (issue 19 item 4): a task drains the partner's received events,
one transaction per event, claimed with SKIP LOCKED; statements per payment are bounded."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.celery import app
from invoices.models import Invoice
from payments import tasks, webhooks
from payments.models import Payment, WebhookEvent, WritebackAttempt, WritebackOutbox
from payments.services import ledger, payment_settings, webhook_events, writeback
from tests import factories

from .test_task_config import Recorder


@pytest.fixture
def broker():
    """Task messages recorded instead of published (as in test_task_config.py)."""
    app.finalize()
    recorder = Recorder()
    with mock.patch.object(app.amqp, "send_task_message", recorder):
        yield recorder


pytestmark = pytest.mark.django_db


def receive(endpoint, secret, invoice, amount="100.00", kind="succeeded", payment_id=None):
    event_id = f"msg_batch_{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "type": f"payment.{kind}",
            "data": {
                "payment_id": payment_id or f"pay_{uuid.uuid4().hex}",
                "invoice_id": invoice.pk,
                "amount": str(amount),
                "currency": "USD",
                "method": "card",
                "version": 1,
            },
        }
    ).encode()
    ts = int(time.time())
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": webhooks.signature_header(secret, event_id, ts, body),
    }
    receipt = webhook_events.webhook_event_receive(
        endpoint_id=endpoint.endpoint_id, headers=headers, body=body
    )
    assert receipt.status == 202
    return WebhookEvent.objects.get(partner=endpoint.partner_id, event_id=event_id)


def endpoint_with_invoices(partner, count):
    endpoint, secret = payment_settings.payment_settings_create(partner=partner)
    invoices = [factories.create_invoice(partner, total="100.00") for _ in range(count)]
    return endpoint, secret, invoices


def statements(ctx) -> list[str]:
    # SAVEPOINT/RELEASE are the test's own transaction (BEGIN/COMMIT in a worker).
    return [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]


# Measured on this code: 10 before issue 19 (the invoice read again after its UPDATE, and
# a SELECT before the first outbox INSERT), 9 now. The bound fails on any extra statement.
STATEMENTS_PER_PAYMENT = 9


def test_statements_per_payment_are_bounded(partner_a):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 3)
    events = [receive(endpoint, secret, inv) for inv in invoices]
    counts = []
    for ev in events:
        with CaptureQueriesContext(connection) as ctx:
            webhook_events.webhook_event_process(partner=partner_a, event_id=ev.pk)
        counts.append(len(statements(ctx)))
    assert counts == [STATEMENTS_PER_PAYMENT] * 3, counts
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.paid_here == Decimal("100.00")
        assert invoice.status == "paid"
        outbox = WritebackOutbox.objects.get(invoice=invoice)
        assert (outbox.state, outbox.version, outbox.desired_paid_date) == (
            "pending",
            1,
            outbox.next_attempt_at.date(),
        )
    assert set(WebhookEvent.objects.filter(partner=partner_a).values_list("status", flat=True)) == {
        "processed"
    }


def test_a_drain_processes_the_received_events_of_its_partner_only(partner_a, partner_b):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 5)
    events = [receive(endpoint, secret, inv) for inv in invoices]
    other_endpoint, other_secret, other_invoices = endpoint_with_invoices(partner_b, 2)
    others = [receive(other_endpoint, other_secret, inv) for inv in other_invoices]

    with CaptureQueriesContext(connection) as ctx:
        batch = webhook_events.webhook_events_drain(partner=partner_a)
    assert (batch.processed, batch.failed) == (5, [])
    # Per event: the claim, the payment's statements; plus one settings read and the final
    # claim that finds nothing. Bounded like a single event.
    assert len(statements(ctx)) <= 5 * STATEMENTS_PER_PAYMENT + 2
    assert {e.status for e in WebhookEvent.objects.filter(pk__in=[e.pk for e in events])} == {
        "processed"
    }
    assert {e.attempts for e in WebhookEvent.objects.filter(pk__in=[e.pk for e in events])} == {1}
    # The other partner's events are not touched.
    assert {e.status for e in WebhookEvent.objects.filter(pk__in=[e.pk for e in others])} == {
        "received"
    }
    assert not Payment.objects.filter(partner=partner_b).exists()
    # A second drain finds nothing; a per-event call afterwards changes nothing.
    assert webhook_events.webhook_events_drain(partner=partner_a).processed == 0
    again = webhook_events.webhook_event_process(partner=partner_a, event_id=events[0].pk)
    assert (again.status, again.attempts) == ("processed", 1)
    assert Payment.objects.filter(partner=partner_a).count() == 5


def test_a_drain_stops_at_its_limit(partner_a):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 4)
    events = [receive(endpoint, secret, inv) for inv in invoices]
    assert webhook_events.webhook_events_drain(partner=partner_a, limit=3).processed == 3
    statuses = list(
        WebhookEvent.objects.filter(pk__in=[e.pk for e in events])
        .order_by("received_at", "id")
        .values_list("status", flat=True)
    )
    assert statuses == ["processed"] * 3 + ["received"]  # oldest first


def test_a_failing_event_does_not_block_the_others(partner_a, monkeypatch):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 4)
    bad = receive(endpoint, secret, invoices[1], payment_id="pay_bad")
    good = [receive(endpoint, secret, inv) for inv in invoices[:1] + invoices[2:]]
    real = webhook_events._apply_processor_event

    def apply(partner, settings_obj, event, signed_at):
        if event.payment_id == "pay_bad":
            raise RuntimeError("processing bug")
        return real(partner, settings_obj, event, signed_at)

    monkeypatch.setattr(webhook_events, "_apply_processor_event", apply)
    batch = webhook_events.webhook_events_drain(partner=partner_a)
    assert (batch.processed, batch.failed) == (3, [bad.pk])
    for event in good:
        event.refresh_from_db()
        assert event.status == "processed"
    bad.refresh_from_db()
    # Counted once (not retried in a loop within the drain), its transaction rolled back.
    assert (bad.status, bad.failures, bad.attempts) == ("received", 1, 1)
    assert "processing bug" in bad.last_error
    assert not Payment.objects.filter(partner=partner_a, processor_payment_id="pay_bad").exists()
    invoices[1].refresh_from_db()
    assert invoices[1].paid_here == Decimal("0.00")
    # Once fixed, the next drain applies it.
    monkeypatch.setattr(webhook_events, "_apply_processor_event", real)
    assert webhook_events.webhook_events_drain(partner=partner_a).processed == 1
    bad.refresh_from_db()
    assert (bad.status, bad.failures) == ("processed", 0)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_drains_apply_every_event_exactly_once(partner_a):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 40)
    events = [receive(endpoint, secret, inv) for inv in invoices]
    barrier = threading.Barrier(3)
    results, errors = [], []

    def drain():
        try:
            barrier.wait(timeout=30)
            results.append(webhook_events.webhook_events_drain(partner=partner_a, limit=1000))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def single():  # the per-event path of the last event's own message, meanwhile
        try:
            barrier.wait(timeout=30)
            webhook_events.webhook_event_process(partner=partner_a, event_id=events[-1].pk)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drain) for _ in range(2)] + [threading.Thread(target=single)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 2
    assert sum(b.processed for b in results) in (39, 40)  # the single call may take the last
    rows = WebhookEvent.objects.filter(pk__in=[e.pk for e in events])
    assert {(r.status, r.attempts) for r in rows} == {("processed", 1)}
    assert Payment.objects.filter(partner=partner_a).count() == 40
    for invoice in Invoice.objects.filter(pk__in=[i.pk for i in invoices]):
        assert invoice.paid_here == Decimal("100.00")  # never counted twice
    assert WritebackOutbox.objects.filter(partner=partner_a).count() == 40
    assert set(
        WritebackOutbox.objects.filter(partner=partner_a).values_list("version", flat=True)
    ) == {1}


@pytest.mark.django_db(transaction=True)
def test_the_task_drains_the_partner_and_publishes_one_writeback_for_the_batch(
    partner_a, partner_b, broker
):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 6)
    events = [receive(endpoint, secret, inv) for inv in invoices]
    other_endpoint, other_secret, other_invoices = endpoint_with_invoices(partner_b, 1)
    other = receive(other_endpoint, other_secret, other_invoices[0])
    receipts = broker.named("payments.webhooks.process")
    assert len(receipts) == 7  # one message per event, as before: the ack path is unchanged
    broker.sent.clear()

    assert tasks.process_webhook_event.apply(args=[partner_a.id, events[2].pk]).get() == "processed"
    rows = WebhookEvent.objects.filter(pk__in=[e.pk for e in events])
    assert {(r.status, r.attempts) for r in rows} == {("processed", 1)}
    other.refresh_from_db()
    assert other.status == "received"  # another partner's events are its own task's
    assert broker.named("payments.writeback.send") == []
    [send] = broker.named("payments.writeback.send_batch")  # one for the six write-backs
    outboxes = WritebackOutbox.objects.filter(partner=partner_a)
    assert send["queue"] == "writeback"
    assert send["args"][0] == partner_a.id
    assert sorted(send["args"][1]) == sorted(o.pk for o in outboxes)
    assert len(send["args"][1]) == 6
    assert broker.named("payments.webhooks.process") == []  # nothing failed: no retry

    # The later messages of the same events find them processed: nothing else happens.
    broker.sent.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert (
            tasks.process_webhook_event.apply(args=[partner_a.id, events[4].pk]).get()
            == "processed"
        )
    assert broker.sent == []
    assert Payment.objects.filter(partner=partner_a).count() == 6
    # Partner, the event (locked), the empty claim, with their transactions.
    assert len(statements(ctx)) <= 7, statements(ctx)


@pytest.mark.django_db(transaction=True)
def test_a_failing_event_in_a_task_batch_is_retried_on_its_own(partner_a, broker, monkeypatch):
    endpoint, secret, invoices = endpoint_with_invoices(partner_a, 3)
    first = receive(endpoint, secret, invoices[0])
    bad = receive(endpoint, secret, invoices[1], payment_id="pay_bad")
    last = receive(endpoint, secret, invoices[2])
    broker.sent.clear()
    real = webhook_events._apply_processor_event

    def apply(partner, settings_obj, event, signed_at):
        if event.payment_id == "pay_bad":
            raise RuntimeError("processing bug")
        return real(partner, settings_obj, event, signed_at)

    monkeypatch.setattr(webhook_events, "_apply_processor_event", apply)
    assert tasks.process_webhook_event.apply(args=[partner_a.id, first.pk]).get() == "processed"
    last.refresh_from_db()
    bad.refresh_from_db()
    assert last.status == "processed"
    assert (bad.status, bad.failures) == ("received", 1)
    [retry] = broker.named("payments.webhooks.process")
    assert retry["args"] == [partner_a.id, bad.pk]
    assert retry["headers"].get("eta")  # with a countdown, not at once


def test_a_batch_task_sends_each_row_with_its_own_claim_and_keeps_retry_after(
    partner_a, connect, run_now, autotask_sandbox, broker
):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == "succeeded"
    db = autotask_sandbox.db
    invoices = list(
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id")[:4]
    )
    assert len(invoices) == 4
    for invoice in invoices:
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=invoice.outstanding)
    rows = list(WritebackOutbox.objects.filter(partner=partner_a).order_by("id"))
    waiting = rows[3]  # waiting out a Retry-After: not sent before it elapses
    later = timezone.now() + timedelta(seconds=5)  # under max_countdown(): a countdown
    WritebackOutbox.objects.filter(pk=waiting.pk).update(next_attempt_at=later)
    # Another relay holds this one (a live claim): skipped, not sent twice.
    held = rows[2]
    WritebackOutbox.objects.filter(pk=held.pk).update(
        state="sending", claim_token=uuid.uuid4(), claimed_at=timezone.now()
    )
    db.reset_counters()
    broker.sent.clear()

    tasks.send_batch.apply(args=[partner_a.id, [r.pk for r in rows]]).get()

    outcomes = {r.pk: r.state for r in WritebackOutbox.objects.filter(pk__in=[r.pk for r in rows])}
    assert outcomes == {
        rows[0].pk: "done",
        rows[1].pk: "done",
        held.pk: "sending",
        waiting.pk: "pending",
    }
    patched = [r["body"]["id"] for r in db.requests(entity="Invoices", method="PATCH")]
    assert sorted(patched) == sorted(i.autotask_id for i in invoices[:2])
    assert WritebackAttempt.objects.filter(outbox_id__in=[rows[0].pk, rows[1].pk]).count() == 2
    assert not WritebackAttempt.objects.filter(outbox_id__in=[held.pk, waiting.pk]).exists()
    # The waiting row is re-armed for its due time, through its own message.
    [rearm] = broker.named("payments.writeback.send")
    assert rearm["args"] == [partner_a.id, waiting.pk]
    assert rearm["headers"].get("eta")


def test_a_batch_task_out_of_time_hands_the_rest_to_a_new_task(partner_a, broker, monkeypatch):
    monkeypatch.setattr(writeback, "SEND_BATCH_SECONDS", 0.0)
    calls = []
    monkeypatch.setattr(
        writeback,
        "writeback_send",
        lambda **kw: calls.append(kw["outbox_id"]) or writeback.SendResult("sent"),
    )
    tasks.send_batch.apply(args=[partner_a.id, [11, 12, 13]]).get()
    assert calls == [11]  # at least one row per task, then out of time
    [rest] = broker.named("payments.writeback.send_batch")
    assert rest["args"] == [partner_a.id, [12, 13]]


# Per row sent (claim, read, attempt row, two fenced renewals, drift resolve, attempt result,
# release): 8, was 10 one task per row (the connection read per row; release then a check).
STATEMENTS_PER_WRITEBACK = 8


def test_statements_per_writeback_in_a_batch_are_bounded(partner_a, connect, run_now, broker):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == "succeeded"
    invoices = list(
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id")[:3]
    )
    for invoice in invoices:
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=invoice.outstanding)
    ids = list(WritebackOutbox.objects.filter(partner=partner_a).values_list("id", flat=True))
    with CaptureQueriesContext(connection) as ctx:
        results, rest = writeback.writeback_send_batch(partner=partner_a, outbox_ids=ids)
    assert [r.outcome for _, r in results] == ["sent"] * 3 and rest == []
    # + the connection, read once for the batch
    assert len(statements(ctx)) == 1 + 3 * STATEMENTS_PER_WRITEBACK, statements(ctx)
