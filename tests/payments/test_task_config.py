"""CQ-1 for the payment tasks (RELIABILITY §2): queues, acks, ids-only messages, countdowns.

The messages are the ones Celery would put on the broker: `app.amqp.send_task_message` is
replaced by a recorder, so routing, arguments, headers and ETA are what the real code paths
(webhook receipt, event processing, the write-back relay, the sweep) produce.
"""

from __future__ import annotations

import json
from datetime import datetime
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.conf import settings
from django.utils import timezone

from config.celery import app
from invoices.models import Invoice
from payments import tasks
from payments.models import WebhookEvent, WritebackOutbox
from payments.services import ledger, payment_settings, webhook_events, writeback

from .conftest import Sender, event

PAYMENT_TASKS = {
    "payments.webhooks.process": "webhooks",
    "payments.webhooks.rematch_stale": "webhooks",
    "payments.writeback.send": "writeback",
    "payments.writeback.send_batch": "writeback",
    "payments.writeback.sweep": "writeback",
    "payments.idempotency.purge": "default",
}


class Recorder:
    """Stands in for the broker: keeps every task message Celery would publish."""

    def __init__(self):
        self.sent: list[dict] = []

    def __call__(self, producer, name, message, **options):
        headers, properties, body, _ = message
        args, kwargs, _embed = body
        queue = options.get("queue")
        self.sent.append(
            {
                "name": name,
                "queue": getattr(queue, "name", queue),
                "args": list(args),
                "kwargs": kwargs,
                "headers": headers,
                "raw": json.dumps([headers, properties, body], default=str),
            }
        )

    def named(self, name: str) -> list[dict]:
        return [m for m in self.sent if m["name"] == name]


@pytest.fixture
def broker():
    app.finalize()
    recorder = Recorder()
    with mock.patch.object(app.amqp, "send_task_message", recorder):
        yield recorder


def countdown_of(message: dict) -> float | None:
    eta = message["headers"].get("eta")
    if not eta:
        return None
    return (datetime.fromisoformat(eta) - timezone.now()).total_seconds()


def assert_ids_only(message: dict, *secrets: str) -> None:
    assert message["kwargs"] == {}
    assert all(isinstance(a, int) and not isinstance(a, bool) for a in message["args"]), message
    for secret in secrets:
        assert secret not in message["raw"]


@pytest.mark.parametrize(("name", "queue"), sorted(PAYMENT_TASKS.items()))
def test_payment_tasks_are_routed_to_their_queue(name, queue):
    app.loader.import_default_modules()  # what a worker does at start: every app's tasks.py
    app.finalize()
    assert name in app.tasks
    route = app.amqp.router.route({}, name, (), {}, app.tasks[name])
    assert route["queue"].name == queue


@pytest.mark.parametrize("name", sorted(PAYMENT_TASKS))
def test_payment_tasks_ack_late_and_reject_on_worker_lost_as_the_app_config(name):
    app.loader.import_default_modules()
    app.finalize()
    task = app.tasks[name]
    assert app.conf.task_acks_late is True and app.conf.task_reject_on_worker_lost is True
    assert task.acks_late is app.conf.task_acks_late
    assert task.reject_on_worker_lost is app.conf.task_reject_on_worker_lost


@pytest.fixture
def synced(partner_a, connect, run_now, autotask_sandbox):
    conn = connect(partner_a)
    run = run_now(conn.first_run)
    assert run.status == "succeeded", run.error_message
    invoice = (
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id").first()
    )
    return {"db": autotask_sandbox.db, "invoice": invoice, "connection": conn}


@pytest.mark.django_db
def test_webhook_to_writeback_messages_carry_ids_only(
    partner_a, synced, broker, django_capture_on_commit_callbacks
):
    s, secret = payment_settings.payment_settings_create(partner=partner_a)
    invoice = synced["invoice"]
    body = event("succeeded", "pay_cq1", invoice, str(invoice.outstanding))
    raw = json.dumps(body)
    with django_capture_on_commit_callbacks(execute=True):
        assert Sender(s.endpoint_id, [secret]).send(body).status_code == 202
    [processed] = broker.named("payments.webhooks.process")
    stored = WebhookEvent.objects.get(partner=partner_a)
    assert processed["queue"] == "webhooks"
    assert processed["args"] == [partner_a.id, stored.id]
    autotask_secret = synced["db"].secret
    assert_ids_only(processed, secret, autotask_secret, raw, "pay_cq1")

    with django_capture_on_commit_callbacks(execute=True):
        tasks.process_webhook_event.apply(args=processed["args"])  # runs here, as a worker would
    [send] = broker.named("payments.writeback.send")
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert send["queue"] == "writeback"
    assert send["args"] == [partner_a.id, outbox.id]
    assert countdown_of(send) is None
    assert_ids_only(send, secret, autotask_secret, raw, "pay_cq1")

    # The sweep (no arguments) re-enqueues due rows by id.
    outbox_due = WritebackOutbox.objects.filter(pk=outbox.pk)
    outbox_due.update(next_attempt_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep.apply()
    swept = broker.named("payments.writeback.send")[1:]
    assert [m["args"] for m in swept] == [[partner_a.id, outbox.id]]
    assert swept[0]["queue"] == "writeback"
    assert_ids_only(swept[0], secret, autotask_secret)


@pytest.mark.django_db
@pytest.mark.parametrize("retry_after", [1, 5, 9.8, 10, 11, 500])
def test_writeback_countdowns_stay_below_half_the_visibility_timeout(
    partner_a, synced, broker, django_capture_on_commit_callbacks, retry_after
):
    half = settings.CELERY_VISIBILITY_TIMEOUT / 2
    assert (
        writeback.max_countdown()
        == half
        == app.conf.broker_transport_options["visibility_timeout"] / 2
    )
    db, invoice = synced["db"], synced["invoice"]
    db.fail_next(1, "429", entity="Invoices", retry_after=retry_after)
    with django_capture_on_commit_callbacks(execute=True):
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=invoice.outstanding)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    [first] = broker.named("payments.writeback.send")
    assert countdown_of(first) is None
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.send.apply(args=first["args"]).get() == "retry"
    outbox.refresh_from_db()
    wait = (outbox.next_attempt_at - timezone.now()).total_seconds()
    assert wait >= retry_after - 1  # never before the server's Retry-After
    again = broker.named("payments.writeback.send")[1:]
    for message in again:
        assert message["args"] == [partner_a.id, outbox.id]
        assert countdown_of(message) <= half
    if retry_after < half:
        assert len(again) == 1  # a short wait is a countdown ...
    elif retry_after > half:
        assert again == []  # ... a long one is next_attempt_at, read by the sweep


@pytest.mark.django_db
def test_webhook_processing_retry_countdown_stays_below_half_the_visibility_timeout(
    partner_a, broker
):
    half = settings.CELERY_VISIBILITY_TIMEOUT / 2
    task = tasks.process_webhook_event
    with mock.patch.object(
        webhook_events, "webhook_event_process", side_effect=RuntimeError("database hiccup")
    ):
        for retries in range(task.max_retries):
            # As in a worker (not eager): retry() publishes a new message with a countdown.
            task.push_request(
                id=f"cq1-{retries}",
                args=[partner_a.id, 1],
                kwargs={},
                retries=retries,
                called_directly=False,
            )
            try:
                with pytest.raises(Retry):
                    task.run(partner_a, 1)
            finally:
                task.pop_request()
    retried = broker.named("payments.webhooks.process")
    assert len(retried) == task.max_retries
    for message in retried:
        assert message["args"] == [partner_a.id, 1]
        assert message["queue"] == "webhooks"
        assert 0 < countdown_of(message) <= half
