"""CQ-10: `delay_on_commit`, rollback, 1,000 times -> 0 tasks; 0 `DoesNotExist`.

Every place that creates a row and enqueues a task for it enqueues after commit
(`transaction.on_commit`): webhook receipt (payments/services/webhook_events.py
`webhook_event_receive`), webhook processing and manual payments (the write-back outbox,
payments/services/writeback.py `enqueue_send`), ops' write-back retry, the re-match of parked
events, sync run creation (sync/services/runs.py `sync_run_create`, called by manual syncs in
sync/services/manual.py and by Connect in integrations/connect.py), and the reaper's requeue
(sync/services/reaper.py).

- Rollback: 1,000 transactions, each doing one of those writes through the real service and
  then raising inside `transaction.atomic()`. Real broker (the Redis of bin/test): 0 messages
  published (Celery's `before_task_publish` signal, and LLEN of the queues `webhooks`,
  `writeback`, `sync`, `default` and the unacked hash unchanged), 0 rows left. Kills: any of
  those `on_commit` wrappers replaced by a direct `.delay()` / `.apply_async()`.
- Commit: 50 transactions (each holds 20 ms after its writes, before commit, so a message sent
  early would reach the worker first). Every message, at the moment it is published, names a
  row another database connection can already see; then a real worker subprocess
  (tests/harness/workers.py) consumes them all and finds every row: every event processed,
  every outbox row handled, every run finished, no `DoesNotExist` in its log. Kills: the same
  mutants (a message published before commit names a row nobody else can see yet).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from integrations.models import AutotaskConnection
from invoices.models import Invoice
from partners.models import Partner
from payments import webhooks
from payments.models import Payment, WebhookEvent, WritebackOutbox
from payments.services import ledger, payment_settings, webhook_events
from payments.services.writeback import writeback_retry
from sync.models import SyncRun
from sync.services.manual import manual_sync_start
from sync.services.reaper import reap_stuck_runs
from sync.services.runs import sync_run_create
from tests import factories
from tests.harness.sync import connect_to
from tests.harness.workers import Worker, wait_for, worker_environment

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = ("webhooks", "writeback", "sync", "default")
ROLLBACKS = 1_000
COMMITS = 50
HOLD_BEFORE_COMMIT = 0.02  # seconds inside each committed transaction, after its writes
TASK_MODELS = {
    "payments.webhooks.process": WebhookEvent,
    "payments.writeback.send": WritebackOutbox,
    "sync.run_sync": SyncRun,
}


class Rollback(Exception):
    """Raised inside transaction.atomic() to roll the transaction back."""


# --- the broker -------------------------------------------------------------------------------


@pytest.fixture
def broker():
    """The real broker: message counts of the four queues (kombu's Redis transport keeps a
    queue as a list named after it, priorities as suffixed lists) and of the unacked hash."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def depths() -> dict[str, int]:
        found = {}
        for queue in QUEUES:
            found[queue] = sum(
                client.llen(key)
                for key in client.scan_iter(match=f"{queue}*")
                if client.type(key) == b"list"
            )
        found["unacked"] = client.hlen("unacked")
        return found

    from config.celery import app

    app.control.purge()  # leftovers of earlier tests
    yield depths
    client.close()


@pytest.fixture
def published():
    """Every task message this process publishes: (task name, args)."""
    seen: list[tuple[str, list]] = []

    def record(sender=None, headers=None, body=None, **kwargs):
        name = (headers or {}).get("task") or sender
        args = list(body[0]) if isinstance(body, list | tuple) and body else []
        seen.append((name, args))

    before_task_publish.connect(record, weak=False)
    yield seen
    before_task_publish.disconnect(record)


# --- data -------------------------------------------------------------------------------------


def make_invoice(partner, total="100.00") -> Invoice:
    return factories.create_invoice(partner, total=total)


def signed_delivery(secret: str, invoice_id: int, amount) -> tuple[dict, bytes]:
    event_id = f"msg_cq10_{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "type": "payment.succeeded",
            "data": {
                "payment_id": f"pay_{uuid.uuid4().hex}",
                "invoice_id": invoice_id,
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
    return headers, body


def connect_directly(partner) -> AutotaskConnection:
    return AutotaskConnection.objects.create(
        partner=partner,
        account_email="ops@example.test",
        username="api-user",
        secret="api-secret",
        username_last4="user",
        connected_at=timezone.now(),
    )


def row_counts() -> dict[str, int]:
    return {
        "events": WebhookEvent.objects.count(),
        "payments": Payment.objects.count(),
        "outbox": WritebackOutbox.objects.count(),
        "runs": SyncRun.objects.count(),
        "connections": AutotaskConnection.objects.count(),
        "invoices_paid_here": Invoice.objects.filter(paid_here__gt=0).count(),
    }


# --- rollback ---------------------------------------------------------------------------------


@pytest.fixture
def rollback_world(make_partner, autotask_sandbox):
    """Committed before the loop: a connected partner with invoices, its webhook endpoint, a
    received event (to process), a parked event (to re-match), a failed outbox row (to retry),
    a run whose worker died (to reap), and a partner that is not connected yet (to connect)."""
    partner = make_partner("Alpha IT", primary_integration=Partner.Integration.AUTOTASK)
    connect_directly(partner)
    endpoint, secret = payment_settings.payment_settings_create(partner=partner)
    invoices = [make_invoice(partner) for _ in range(5)]

    def stored_event(status, invoice_id):
        headers, body = signed_delivery(secret, invoice_id, "10.00")
        return WebhookEvent.objects.create(
            partner=partner,
            settings=endpoint,
            event_id=headers["webhook-id"],
            event_type="payment.succeeded",
            processor_payment_id=json.loads(body)["data"]["payment_id"],
            body=body.decode(),
            signed_at=timezone.now(),
            status=status,
        )

    received = stored_event(WebhookEvent.Status.RECEIVED, invoices[1].pk)
    stored_event(WebhookEvent.Status.PARKED, 999_999_999)  # unknown invoice: parked
    failed_outbox = WritebackOutbox.objects.create(
        partner=partner,
        invoice=invoices[2],
        desired_paid_date=timezone.localdate(),
        state=WritebackOutbox.State.FAILED,
    )
    dead = SyncRun.objects.create(
        partner=partner,
        kind=SyncRun.Kind.NEW_DATA,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=1),
        attempts=1,
    )
    newcomer = make_partner("Bravo Networks", primary_integration=Partner.Integration.AUTOTASK)
    return {
        "partner": partner,
        "endpoint": endpoint,
        "secret": secret,
        "invoices": invoices,
        "received": received,
        "failed_outbox": failed_outbox,
        "dead_run": dead,
        "newcomer": newcomer,
        "sandbox": autotask_sandbox,
    }


def rollback_actions(w):
    """Each action writes through a real service inside the caller's transaction."""
    partner, invoices = w["partner"], w["invoices"]

    def webhook_receive():
        headers, body = signed_delivery(w["secret"], invoices[3].pk, "100.00")
        receipt = webhook_events.webhook_event_receive(
            endpoint_id=w["endpoint"].endpoint_id, headers=headers, body=body
        )
        assert receipt.status == 202, receipt

    def webhook_process():  # payment + outbox row + enqueue_send
        event = webhook_events.webhook_event_process(partner=partner, event_id=w["received"].pk)
        assert event.status == WebhookEvent.Status.PROCESSED, (event.status, event.reason)

    def manual_payment():  # payment + outbox row + enqueue_send
        ledger.payment_record(partner=partner, invoice_id=invoices[4].pk, amount=Decimal("100.00"))

    def outbox_retry():
        assert writeback_retry(outbox=w["failed_outbox"])

    def rematch_parked():
        assert webhook_events.webhook_events_rematch(partner=partner) == 1

    def run_create():
        assert sync_run_create(partner=partner, kind=SyncRun.Kind.PDF, trigger=SyncRun.Trigger.OPS)

    def manual_sync():
        manual_sync_start(partner=partner, kind=SyncRun.Kind.NEW_DATA)

    def reap():
        assert reap_stuck_runs()["requeued"] >= 1

    def connect():
        conn = connect_to(w["newcomer"], w["sandbox"].db)
        assert conn.first_run is not None

    return [
        webhook_receive,
        webhook_process,
        manual_payment,
        outbox_retry,
        rematch_parked,
        run_create,
        manual_sync,
        reap,
        connect,
    ]


def test_rolled_back_transactions_publish_no_task(rollback_world, broker, published):
    """CQ-10, rollback x 1,000. Kills: any enqueue that does not wait for commit."""
    actions = rollback_actions(rollback_world)
    before_rows, before_depths = row_counts(), broker()
    assert not published
    started = time.monotonic()
    done = Counter()
    for i in range(ROLLBACKS):
        action = actions[i % len(actions)]
        with pytest.raises(Rollback), transaction.atomic():
            action()
            raise Rollback
        done[action.__name__] += 1
    took = time.monotonic() - started
    print(f"\nCQ-10: {ROLLBACKS} rolled-back transactions in {took:.1f} s: {dict(done)}")

    assert published == []  # 0 tasks
    assert broker() == before_depths
    assert row_counts() == before_rows
    w = rollback_world
    w["received"].refresh_from_db()
    assert w["received"].status == WebhookEvent.Status.RECEIVED
    w["failed_outbox"].refresh_from_db()
    assert w["failed_outbox"].state == WritebackOutbox.State.FAILED
    w["dead_run"].refresh_from_db()
    assert w["dead_run"].status == SyncRun.Status.RUNNING
    assert not AutotaskConnection.objects.filter(partner=w["newcomer"]).exists()


# --- commit -----------------------------------------------------------------------------------


def visible_elsewhere(model, pk) -> bool:
    """Can another database connection (another thread) see the row?"""
    found: list[bool] = []

    def look():
        try:
            found.append(model.objects.filter(pk=pk).exists())
        finally:
            connections.close_all()

    t = threading.Thread(target=look)
    t.start()
    t.join(timeout=10)
    return bool(found and found[0])


@pytest.fixture
def publish_visibility():
    """For each message published by this process: is the row it names committed (visible to
    another connection) at that moment?"""
    checked: list[tuple[str, int, bool]] = []

    def check(sender=None, headers=None, body=None, **kwargs):
        name = (headers or {}).get("task") or sender
        model = TASK_MODELS.get(name)
        if model is None:
            return
        pk = body[0][1]
        checked.append((name, pk, visible_elsewhere(model, pk)))

    before_task_publish.connect(check, weak=False)
    yield checked
    before_task_publish.disconnect(check)


@pytest.fixture
def worker(autotask_sandbox, tmp_path):
    env = worker_environment(autotask_sandbox, lease_seconds=6)
    w = Worker(env, tmp_path / "worker.log", queues=",".join(QUEUES), concurrency=2)
    yield w
    w.kill()  # always, by pid, before the database is flushed


def test_committed_transactions_publish_after_commit_and_the_worker_finds_every_row(
    make_partner, broker, publish_visibility, worker
):
    """CQ-10, commit x 50: 0 DoesNotExist. A partner without an Autotask connection, so each
    task ends fast and says it found its row: events processed, outbox rows parked as
    "not_connected" by the relay, runs failed as "not_connected"."""
    partner = make_partner("Charlie Tech")
    endpoint, secret = payment_settings.payment_settings_create(partner=partner)
    invoices = [make_invoice(partner) for _ in range(2 * COMMITS)]
    worker.start()

    events, runs = [], []
    for i in range(COMMITS):
        with transaction.atomic():
            headers, body = signed_delivery(secret, invoices[2 * i].pk, "100.00")
            receipt = webhook_events.webhook_event_receive(
                endpoint_id=endpoint.endpoint_id, headers=headers, body=body
            )
            assert receipt.status == 202
            events.append(headers["webhook-id"])
            ledger.payment_record(
                partner=partner, invoice_id=invoices[2 * i + 1].pk, amount=Decimal("100.00")
            )
            runs.append(
                sync_run_create(
                    partner=partner, kind=SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.OPS
                ).pk
            )
            time.sleep(HOLD_BEFORE_COMMIT)

    # At publish time every message named a committed row.
    names = [name for name, _, _ in publish_visibility]
    assert names.count("payments.webhooks.process") == COMMITS
    assert names.count("sync.run_sync") == COMMITS
    assert names.count("payments.writeback.send") >= COMMITS  # + those the worker enqueues
    invisible = [c for c in publish_visibility if not c[2]]
    assert not invisible, invisible[:5]

    def drained():
        return (
            not WebhookEvent.objects.filter(partner=partner, status="received").exists()
            and WritebackOutbox.objects.filter(partner=partner).count() == 2 * COMMITS
            and not WritebackOutbox.objects.filter(
                partner=partner, state__in=["pending", "sending"]
            ).exists()
            and not SyncRun.objects.filter(id__in=runs, status__in=SyncRun.ACTIVE).exists()
        )

    wait_for(drained, timeout=120, interval=0.25, what="the worker handled every message")
    assert set(
        WebhookEvent.objects.filter(event_id__in=events).values_list("status", flat=True)
    ) == {"processed"}
    assert Payment.objects.filter(partner=partner).count() == 2 * COMMITS
    outbox = WritebackOutbox.objects.filter(partner=partner)
    assert set(outbox.values_list("state", "last_error_kind")) == {("parked", "not_connected")}
    assert set(SyncRun.objects.filter(id__in=runs).values_list("status", "error_kind")) == {
        ("failed", "not_connected")
    }
    log = worker.log()
    assert "DoesNotExist" not in log
    assert "not_claimed" not in log  # a relay that found no row to claim
    wait_for(lambda: broker()["unacked"] == 0, timeout=30, what="every message acknowledged")
