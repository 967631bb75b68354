"""CQ-7: Redis down 30 s; `FLUSHALL` mid-run -> 0 payments or write-backs lost; syncs resume.

Webhook events, payments and write-back outbox rows live in PostgreSQL; Redis only carries the
messages (and the Autotask limiter's counters). So a Redis outage or flush may lose messages,
never work: the periodic sweeps read the database and enqueue again what the broker lost.

Each test runs its own Redis (`redis-server --save '' --appendonly no` on a free port, killed
and restarted by pid: a restart is an empty Redis, like production's without persistence),
points this process's Celery app and settings (broker, `REDIS_URL`) and a real worker
subprocess (tests/harness/workers.py, queues webhooks, writeback, sync, default) at it, and
restores the app afterwards. Webhooks go through the real view (Django's test client).

Sweeps: beat runs them in production (payments/migrations/0002, sync/migrations/0002: the
write-back sweep every 30 s, stale webhook events every 2 minutes, the sync reaper every 5
minutes). Here the test calls the same services directly, with their age thresholds shortened
(stale events: 0 s instead of 2 minutes; lost queued runs: made older than the reaper's
QUEUED_LOST_AFTER, by ageing the queued runs once), rather than run beat and wait minutes.

(a) Redis down 30 s (the row's figure): events posted meanwhile are answered 202 and stored;
    manual payments are recorded; a sync run is created. After the restart and the sweeps:
    every payment applied once, exactly one PATCH per paid invoice with its paidDate in the
    sandbox, the run succeeded. Kills: an enqueue failure that answers 500 after the commit
    (a robust on_commit in webhook_event_receive), a sweep that is not scheduled or not run.
(b) FLUSHALL while events and write-backs are queued (Autotask slowed to 400 ms, so messages
    wait in Redis): after the sweeps, the same end state, each invoice PATCHed exactly once.
(c) FLUSHALL while one partner's initial sync runs and another's waits in the queue: the
    running one finishes, the flushed one resumes through the reaper; both complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.db.models import F
from django.db.models.functions import Coalesce
from django.test import Client
from django.utils import timezone

from invoices.models import Invoice
from payments import webhooks
from payments.models import Payment, WebhookEvent, WritebackOutbox
from payments.services import ledger, payment_settings, webhook_events
from payments.services.writeback import writeback_sweep
from sandbox.state import SandboxDatabase
from sync.models import SyncRun
from sync.services.reaper import QUEUED_LOST_AFTER, reap_stuck_runs
from sync.services.runs import sync_run_create
from tests.harness.sandbox import reopen_paid_invoices
from tests.harness.sync import connect_to
from tests.harness.workers import Worker, alive, wait_for, worker_environment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DOWN_SECONDS = 30  # RELIABILITY CQ-7
QUEUES = "webhooks,writeback,sync,default"
DRAIN = 120  # a bound, not a target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A Redis of this test only, on a free port; killed and restarted by pid."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> OwnRedis:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up():
            with contextlib.suppress(redis.RedisError):
                return self.client().ping()
            return False

        wait_for(up, timeout=10, interval=0.05, what="redis-server up")
        return self

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def flushall(self) -> None:
        self.client().flushall()

    def queued(self) -> int:
        c = self.client()
        return sum(
            c.llen(key)
            for q in QUEUES.split(",")
            for key in c.scan_iter(match=f"{q}*")
            if c.type(key) == b"list"
        )


def _use_broker(app, url: str) -> None:
    app.conf.broker_url = url
    app._pool = None  # the connection and producer pools are cached per app
    app.amqp._producer_pool = None


@pytest.fixture
def own_redis(settings, tmp_path):
    """Start our Redis; this process's Celery app, broker settings and Autotask limiter (by
    REDIS_URL) use it until the end of the test, then the bin/test Redis again."""
    from config.celery import app

    server = OwnRedis(tmp_path).start()
    old_url = app.conf.broker_url
    settings.REDIS_URL = settings.CELERY_BROKER_URL = server.url
    _use_broker(app, server.url)
    try:
        yield server
    finally:
        _use_broker(app, old_url)
        server.kill()


@pytest.fixture
def start_worker(tmp_path):
    started: list[Worker] = []

    def start(server, own: OwnRedis, *, concurrency: int = 2) -> Worker:
        env = worker_environment(server, lease_seconds=6)
        env.update(REDIS_URL=own.url, CELERY_BROKER_URL=own.url, LOG_LEVEL="INFO")
        worker = Worker(env, tmp_path / "worker.log", queues=QUEUES, concurrency=concurrency)
        started.append(worker)  # before start(): a failed start is killed too
        return worker.start()

    yield start
    for worker in started:  # always, by pid, before the database is flushed
        worker.kill()


@pytest.fixture
def paying_partner(partner_a, connect, run_now, make_sandbox, own_redis):
    """Partner A connected to a sandbox with open invoices and synced, its webhook endpoint;
    the broker left empty (the connect's message was for the run already done here)."""
    server = make_sandbox(companies=20, invoices=120)
    reopen_paid_invoices(server)
    conn = connect(partner_a, server=server)
    run = run_now(conn.first_run)
    assert run.status == "succeeded", run.error_message
    server.db.reset_counters()
    endpoint, secret = payment_settings.payment_settings_create(partner=partner_a)
    own_redis.flushall()
    invoices = list(
        Invoice.objects.filter(
            partner=partner_a, status="open", outstanding__gte=Decimal("1.00"), archived_at=None
        ).order_by("id")
    )
    return {"server": server, "endpoint": endpoint, "secret": secret, "invoices": invoices}


def post_payment(client: Client, world, invoice: Invoice, amount: Decimal | None = None):
    event_id = f"msg_cq7_{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "type": "payment.succeeded",
            "data": {
                "payment_id": f"pay_cq7_{uuid.uuid4().hex}",
                "invoice_id": invoice.pk,
                "amount": str(amount if amount is not None else invoice.outstanding),
                "currency": invoice.currency,
                "method": "card",
                "version": 1,
            },
        }
    ).encode()
    ts = int(time.time())
    started = time.perf_counter()
    response = client.generic(
        "POST",
        f"/api/v1/payments/webhooks/{world['endpoint'].endpoint_id}/",
        body,
        content_type="application/json",
        HTTP_WEBHOOK_ID=event_id,
        HTTP_WEBHOOK_TIMESTAMP=str(ts),
        HTTP_WEBHOOK_SIGNATURE=webhooks.signature_header(world["secret"], event_id, ts, body),
    )
    return event_id, response.status_code, time.perf_counter() - started


def run_sweeps(*, age_queued_runs: bool = False) -> dict:
    """What beat runs periodically, with the age thresholds shortened (module docstring).
    `age_queued_runs`: the queued runs are made QUEUED_LOST_AFTER older (created_at and
    heartbeat_at), as if the reaper's 5 minutes had passed for them; live runs are untouched."""
    if age_queued_runs:
        age = QUEUED_LOST_AFTER + timedelta(seconds=1)
        SyncRun.objects.filter(status=SyncRun.Status.QUEUED).update(
            created_at=F("created_at") - age,
            heartbeat_at=Coalesce("heartbeat_at", "created_at") - age,
        )
    return {
        "events": webhook_events.webhook_events_requeue_stale(older_than=timedelta(0)),
        "writebacks": writeback_sweep(),
        "runs": reap_stuck_runs()["requeued"],
    }


def sweep_until(done, *, timeout: float = DRAIN, every: float = 5.0, what: str) -> int:
    """Run the sweeps every `every` seconds (beat, sped up) until `done()`; bounded. The first
    round is the first reaper pass after the loss (queued runs aged, see run_sweeps)."""
    deadline = time.monotonic() + timeout
    rounds = 0
    while time.monotonic() < deadline:
        run_sweeps(age_queued_runs=rounds == 0)
        rounds += 1
        with contextlib.suppress(TimeoutError):
            wait_for(done, timeout=every, interval=0.25, what=what)
            return rounds
    raise TimeoutError(f"{what} not reached in {timeout:.0f} s ({rounds} sweep rounds)")


def settled(partner, event_ids, paid_invoices) -> bool:
    if WebhookEvent.objects.filter(partner=partner, status="received").exists():
        return False
    if WebhookEvent.objects.filter(event_id__in=event_ids).exclude(status="processed").exists():
        return False
    outbox = WritebackOutbox.objects.filter(invoice__in=paid_invoices)
    return outbox.count() == len(paid_invoices) and not outbox.exclude(state="done").exists()


def assert_paid_once(partner, world, event_ids, paid_invoices) -> None:
    events = WebhookEvent.objects.filter(event_id__in=event_ids)
    assert events.count() == len(event_ids)
    assert set(events.values_list("status", flat=True)) == {"processed"}
    assert Payment.objects.filter(partner=partner).count() == len(paid_invoices)
    assert Payment.objects.filter(partner=partner).values("invoice_id").distinct().count() == len(
        paid_invoices
    )
    db = world["server"].db
    patches: dict[int, int] = {}
    for entry in db.requests(entity="Invoices", method="PATCH"):
        at_id = (entry.get("body") or {}).get("id")
        patches[at_id] = patches.get(at_id, 0) + 1
    for invoice in paid_invoices:
        invoice.refresh_from_db()
        assert invoice.status == "paid", invoice.pk
        assert patches.get(invoice.autotask_id) == 1, (invoice.pk, patches.get(invoice.autotask_id))
        assert db.get_invoice(invoice.autotask_id)["paidDate"], invoice.pk
    assert sum(patches.values()) == len(paid_invoices)


def test_redis_down_30s_loses_no_payment_or_writeback(
    partner_a, paying_partner, own_redis, start_worker
):
    """CQ-7 (a). Kills: a broker error turned into a 500 after the event was committed; a
    write-back or event nobody enqueues again once the broker lost it."""
    world = paying_partner
    invoices = world["invoices"]
    worker = start_worker(world["server"], own_redis)
    client = Client(raise_request_exception=False)

    # Warm-up with Redis up: the whole pipeline works (event -> payment -> PATCH).
    first, status, _ = post_payment(client, world, invoices[0])
    assert status == 202
    wait_for(
        lambda: settled(partner_a, [first], invoices[:1]),
        timeout=60,
        interval=0.2,
        what="warm-up payment written back",
    )

    own_redis.kill()
    down_at = time.monotonic()
    during = invoices[1:21]
    answers = [post_payment(client, world, inv) for inv in during]
    manual = invoices[21:26]
    for inv in manual:
        ledger.payment_record(partner=partner_a, invoice_id=inv.pk, amount=inv.outstanding)
    # The run is committed and its enqueue fails quietly (robust on_commit): no error reaches
    # the caller; the reaper enqueues the run again.
    sync_run_create(partner=partner_a, kind=SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.OPS)
    run = SyncRun.objects.filter(partner=partner_a).latest("id")
    assert run.status == SyncRun.Status.QUEUED and run.trigger == SyncRun.Trigger.OPS

    statuses = [s for _, s, _ in answers]
    slowest = max(t for _, _, t in answers)
    assert statuses == [202] * len(during), statuses  # stored, so accepted: never a 500
    assert WebhookEvent.objects.filter(
        event_id__in=[e for e, _, _ in answers], status="received"
    ).count() == len(during)
    time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
    assert alive(worker.pid), "the worker died with the broker"
    own_redis.start()  # same port, empty: what a restart without persistence leaves
    print(
        f"\nCQ-7a: Redis down {time.monotonic() - down_at:.0f} s; {len(during)} webhooks "
        f"answered {sorted(set(statuses))}, slowest {slowest * 1000:.0f} ms"
    )

    event_ids = [first] + [e for e, _, _ in answers]
    paid = invoices[:1] + during + manual
    rounds = sweep_until(
        lambda: (
            settled(partner_a, event_ids, paid)
            and not SyncRun.objects.filter(pk=run.pk, status__in=SyncRun.ACTIVE).exists()
        ),
        what="events processed, write-backs sent, run finished",
    )
    print(f"CQ-7a: settled after {rounds} sweep round(s)")
    assert_paid_once(partner_a, world, event_ids, paid)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)


def test_flushall_with_events_and_writebacks_queued_loses_none(
    partner_a, paying_partner, own_redis, start_worker
):
    """CQ-7 (b). Kills: no write-back sweep / no stale-event requeue (the flushed messages are
    never sent again)."""
    world = paying_partner
    invoices = world["invoices"][:30]
    db = world["server"].db
    db.set_switches(latency_ms=400)  # PATCHes wait: messages pile up in Redis
    start_worker(world["server"], own_redis)
    client = Client(raise_request_exception=False)
    answers = [post_payment(client, world, inv) for inv in invoices]
    assert [s for _, s, _ in answers] == [202] * len(invoices)
    wait_for(
        lambda: len(db.requests(entity="Invoices", method="PATCH")) >= 3,
        timeout=60,
        interval=0.1,
        what="first write-backs sent",
    )
    queued = own_redis.queued()
    own_redis.flushall()
    lost_events = WebhookEvent.objects.filter(partner=partner_a, status="received").count()
    lost_outbox = WritebackOutbox.objects.filter(partner=partner_a, state="pending").count()
    print(
        f"\nCQ-7b: FLUSHALL with {queued} messages queued: {lost_events} events received, "
        f"{lost_outbox} write-backs pending, {len(db.requests(method='PATCH'))} PATCHes sent"
    )
    assert queued > 0 and lost_events + lost_outbox > 0  # something really was lost
    db.set_switches(latency_ms=0)

    event_ids = [e for e, _, _ in answers]
    sweep_until(lambda: settled(partner_a, event_ids, invoices), what="all settled after flush")
    assert_paid_once(partner_a, world, event_ids, invoices)


def test_flushall_mid_sync_the_flushed_run_resumes(
    partner_a, partner_b, make_sandbox, own_redis, start_worker, settings
):
    """CQ-7 (c). A's initial sync runs (one pool process) while B's waits in the queue; FLUSHALL.
    A finishes; B's message is gone, its run stays queued until the reaper enqueues it again.
    Kills: a reaper that does not requeue queued runs whose message was lost."""
    dbs = [
        SandboxDatabase(
            username=f"api-{name}@sandbox.test",
            secret=f"sandbox-secret-{uuid.uuid4().hex[:8]}",
            integration_code=settings.AUTOTASK_INTEGRATION_CODE,
            companies=30,
            invoices=1200,
            latency_ms=30,
        )
        for name in ("a", "b")
    ]
    server = make_sandbox(databases=dbs)
    start_worker(server, own_redis, concurrency=1)

    def connect(partner, db):
        return connect_to(partner, db).first_run

    run_a = connect(partner_a, dbs[0])
    wait_for(
        lambda: SyncRun.objects.filter(pk=run_a.pk, status=SyncRun.Status.RUNNING).exists(),
        timeout=60,
        interval=0.02,
        what="A's sync running",
    )
    # Hold A's sync mid-run (every Autotask answer now takes 3 s) while B's run is queued
    # behind it and Redis is flushed; then Autotask answers at its normal speed again.
    dbs[0].set_switches(latency_ms=3000)
    run_b = connect(partner_b, dbs[1])
    assert own_redis.queued() >= 1  # B's message waits behind A's run
    own_redis.flushall()
    run_a.refresh_from_db()
    run_b.refresh_from_db()
    assert run_a.status == SyncRun.Status.RUNNING, run_a.status  # flushed mid-run
    assert run_b.status == SyncRun.Status.QUEUED
    dbs[0].set_switches(latency_ms=30)

    def finished(run):
        run.refresh_from_db()
        return not run.is_active

    wait_for(lambda: finished(run_a), timeout=DRAIN, interval=0.2, what="A's run finished")
    time.sleep(2)  # B's message is gone: nothing picks it up by itself
    run_b.refresh_from_db()
    assert run_b.status == SyncRun.Status.QUEUED
    sweep_until(lambda: finished(run_b), what="B's run finished after the reaper")
    for run, partner, db in ((run_a, partner_a, dbs[0]), (run_b, partner_b, dbs[1])):
        run.refresh_from_db()
        assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
        invoices = Invoice.objects.filter(partner=partner)
        assert invoices.count() == settled_count(db) > 0
        assert invoices.values("autotask_id").distinct().count() == invoices.count()


def settled_count(db) -> int:
    """Invoices an initial sync takes: not voided, created over 10 minutes ago."""
    cutoff = (timezone.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return len(
        [i for i in db.invoices() if not i.get("isVoided") and i["createDateTime"] <= cutoff]
    )
