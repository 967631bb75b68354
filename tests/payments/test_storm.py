"""WH-4 / WH-5: a storm of duplicated webhooks against a real gunicorn and a real Celery worker.

A partner is connected to the in-process Autotask sandbox and synced. Its processor sends N
payment.succeeded events (most pay an invoice in full, some pay it in two halves, some leave it
partly paid), each delivered 3 times with the same webhook-id, shuffled with a seeded RNG
(copies of an event stay close, so they arrive together), from 8 threads over HTTP to
`gunicorn -w 2` on 127.0.0.1 (test database, test Redis). A Celery worker subprocess (queues
webhooks, writeback, default) processes the events and writes paidDate back.

Pass: every answer 2xx, exactly one 202 per event (the rest 200 duplicates), N events, N
payments, one outbox row and exactly one PATCH per invoice that became fully paid, its paidDate
set in the sandbox, none for the partly paid ones. Kills: SELECT-then-INSERT dedupe (RELIABILITY
§4: a duplicate 202 and event row, or a 500 from the unique key, under this concurrency).

WH-5 (second test): one gunicorn worker process is SIGKILLed twice during the storm and the
sender retries connection errors and non-2xx answers: still 0 lost, 0 duplicated.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from invoices.models import Invoice
from payments import webhooks
from payments.models import Payment, WebhookEvent, WritebackOutbox
from payments.services import ledger, payment_settings, webhook_events
from tests.harness.gunicorn import Gunicorn
from tests.harness.sandbox import reopen_paid_invoices
from tests.harness.workers import (
    Worker,
    wait_for,
    worker_environment,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EVENTS = int(os.environ.get("PAYSYNC_STORM_EVENTS", "1000"))
COPIES = 3
THREADS = 8
SEED = 20260401
SPLIT_SHARE = 0.1  # of the events: invoices paid in two halves (2 events each)
PARTIAL_SHARE = 0.1  # of the events: one partial payment, the invoice stays open
DRAIN_TIMEOUT = 300  # a bound, not a target: a busy 2-core machine drains slowly


@pytest.fixture
def storm_env(partner_a, connect, run_now, make_sandbox, tmp_path):
    """The sandbox with enough open invoices, the partner connected and synced, its webhook
    endpoint, and the environment of the server and worker subprocesses."""
    server = make_sandbox(companies=100, invoices=int(EVENTS * 1.2))
    reopen_paid_invoices(server)
    conn = connect(partner_a, server=server)
    run = run_now(conn.first_run)
    assert run.status == "succeeded", run.error_message
    server.db.reset_counters()
    endpoint, secret = payment_settings.payment_settings_create(partner=partner_a)
    env = worker_environment(server)
    from config.celery import app

    app.control.purge()  # the sync's own message and anything left over
    return {"server": server, "endpoint": endpoint, "secret": secret, "env": env}


@pytest.fixture
def processes(storm_env, tmp_path):
    started: list = []

    def start_gunicorn() -> Gunicorn:
        # Request logs at INFO would cost the server more than the requests themselves.
        env = {**storm_env["env"], "LOG_LEVEL": "WARNING"}
        g = Gunicorn(env, tmp_path / "gunicorn.log")
        started.append(g)  # before start(): a failed start is killed too
        return g.start()

    def start_worker() -> Worker:
        w = Worker(
            storm_env["env"],
            tmp_path / "worker.log",
            queues="webhooks,writeback,default",
            concurrency=2,
        )
        started.append(w)  # before start(): a failed start is killed too
        return w.start()

    yield start_gunicorn, start_worker
    for proc in started:  # always, by pid, before the database is flushed
        proc.stop()


# --- the processor's side ---------------------------------------------------------------------


def plan_events(partner, rng: random.Random, occurred_at: str):
    """N events over distinct open invoices. Returns (events, fully_paid invoices, partly paid
    invoices); an event is (event_id, body bytes)."""
    n_split = int(EVENTS * SPLIT_SHARE) // 2
    n_partial = int(EVENTS * PARTIAL_SHARE)
    n_full = EVENTS - 2 * n_split - n_partial
    candidates = list(
        Invoice.objects.filter(
            partner=partner, status="open", outstanding__gte=Decimal("0.02"), archived_at=None
        ).order_by("id")
    )
    needed = n_full + n_split + n_partial
    assert len(candidates) >= needed, f"{len(candidates)} open invoices, {needed} needed"
    chosen = rng.sample(candidates, needed)
    full, split, partial = (
        chosen[:n_full],
        chosen[n_full : n_full + n_split],
        chosen[n_full + n_split :],
    )
    amounts: list[tuple[Invoice, Decimal]] = [(inv, inv.outstanding) for inv in full]
    for inv in split:
        half = (inv.outstanding * Decimal(rng.uniform(0.2, 0.8))).quantize(Decimal("0.01"))
        half = min(max(half, Decimal("0.01")), inv.outstanding - Decimal("0.01"))
        amounts += [(inv, half), (inv, inv.outstanding - half)]
    for inv in partial:
        part = (inv.outstanding * Decimal(rng.uniform(0.1, 0.9))).quantize(Decimal("0.01"))
        amounts.append((inv, min(max(part, Decimal("0.01")), inv.outstanding - Decimal("0.01"))))
    events = []
    for i, (inv, amount) in enumerate(amounts):
        body = {
            "type": "payment.succeeded",
            "data": {
                "payment_id": f"pay_storm_{i}",
                "invoice_id": inv.pk,
                "amount": str(amount),
                "currency": inv.currency,
                "method": "card",
                "occurred_at": occurred_at,
                "version": 1,
            },
        }
        events.append((f"msg_storm_{i}_{rng.getrandbits(48):012x}", json.dumps(body).encode()))
    assert len(events) == EVENTS
    return events, full + split, partial


def shuffled_deliveries(events, rng: random.Random) -> list:
    """The events in a seeded random order, each copy close to its siblings: duplicates of a
    webhook arrive together (a retry after a timeout, a double send), so copies of one event
    are handled by both gunicorn workers at once. That is what kills a SELECT-then-INSERT
    dedupe; copies spread over the whole storm would almost never meet."""
    order = list(events)
    rng.shuffle(order)
    deliveries = [e for e in order for _ in range(COPIES)]
    window = 2 * THREADS
    for start in range(0, len(deliveries), window):  # shuffle within small windows only
        chunk = deliveries[start : start + window]
        rng.shuffle(chunk)
        deliveries[start : start + window] = chunk
    return deliveries


def send_storm(url: str, secret: str, deliveries, *, retry: bool, on_progress=None):
    """Post every delivery from THREADS threads (a requests.Session each). Returns the answers
    as (event_id, status, seconds) and the number of retried attempts. With `retry`, connection
    errors and non-2xx answers are retried (bounded), as a processor would."""
    answers: list[tuple[str, int, float]] = []
    retried = [0]
    lock = threading.Lock()
    done = [0]
    failures: list[BaseException] = []

    def post(session, event_id, body):
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": webhooks.signature_header(secret, event_id, ts, body),
        }
        started = time.perf_counter()
        response = session.post(url, data=body, headers=headers, timeout=30)
        return response.status_code, time.perf_counter() - started

    cursor = iter(deliveries)  # shared: consecutive deliveries leave at the same moment

    def next_delivery():
        with lock:
            return next(cursor, None)

    def run():
        try:
            with requests.Session() as session:
                while (delivery := next_delivery()) is not None:
                    event_id, body = delivery
                    for attempt in range(20):
                        try:
                            status, took = post(session, event_id, body)
                        except requests.ConnectionError:
                            if not retry:
                                raise
                            status, took = -1, 0.0
                        if not retry or 200 <= status < 300:
                            break
                        with lock:
                            retried[0] += 1
                        time.sleep(min(0.05 * (attempt + 1), 0.5))  # bounded sender backoff
                    with lock:
                        answers.append((event_id, status, took))
                        done[0] += 1
                        count = done[0]
                    if on_progress:
                        on_progress(count)
        except BaseException as exc:  # surfaced in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "sender threads did not finish in 300 s"
    if failures:
        raise failures[0]
    return answers, retried[0]


def wait_drained(partner, expect_outbox: int, timeout: float = DRAIN_TIMEOUT):
    def drained():
        pending = WebhookEvent.objects.filter(partner=partner, status="received").exists()
        if pending:
            return False
        done = WritebackOutbox.objects.filter(partner=partner, state="done").count()
        return done >= expect_outbox

    wait_for(drained, timeout=timeout, interval=0.25, what="events processed, outbox drained")


def storm(partner_a, storm_env, processes, *, kill_gunicorn_workers: int = 0):
    start_gunicorn, start_worker = processes
    server, secret = storm_env["server"], storm_env["secret"]
    rng = random.Random(SEED)
    occurred = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    events, fully_paid, partly_paid = plan_events(partner_a, rng, occurred.isoformat())
    deliveries = shuffled_deliveries(events, rng)

    gunicorn = start_gunicorn()
    worker = start_worker()
    url = f"{gunicorn.base_url}/api/v1/payments/webhooks/{storm_env['endpoint'].endpoint_id}/"

    killed: list[int] = []
    kill_at = [len(deliveries) * (k + 1) // (kill_gunicorn_workers + 1) for k in range(2)][
        :kill_gunicorn_workers
    ]
    kill_lock = threading.Lock()

    def on_progress(count):
        with kill_lock:
            if len(killed) < len(kill_at) and count >= kill_at[len(killed)]:
                killed.append(gunicorn.kill_one_worker())

    started = time.monotonic()
    answers, retried = send_storm(
        url, secret, deliveries, retry=kill_gunicorn_workers > 0, on_progress=on_progress
    )
    sent_in = time.monotonic() - started
    requeued = 0
    try:
        # With kills, a lost publish is expected now and then: look for it after 60 s.
        first_wait = 60 if kill_gunicorn_workers else DRAIN_TIMEOUT
        wait_drained(partner_a, expect_outbox=len(fully_paid), timeout=first_wait)
    except TimeoutError:
        if not kill_gunicorn_workers:
            raise
        # A gunicorn worker killed between its commit and its publish leaves an event
        # "received" without a task: the periodic rematch_stale pass (every 2 minutes in
        # production) enqueues it again. Run that pass now rather than wait for beat.
        requeued = webhook_events.webhook_events_requeue_stale(older_than=timedelta(seconds=30))
        wait_drained(partner_a, expect_outbox=len(fully_paid))
    drained_in = time.monotonic() - started - sent_in
    latencies = sorted(a[2] for a in answers if a[2] > 0)
    print(
        f"\nWH-{5 if kill_gunicorn_workers else 4}: {len(events)} events x {COPIES} in "
        f"{sent_in:.1f} s ({len(deliveries) / sent_in:.0f} req/s), p50 "
        f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
        f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms; retried {retried}; "
        f"drained {drained_in:.1f} s after the last answer; gunicorn workers killed {killed}, "
        f"stale events re-enqueued {requeued}"
    )
    return {
        "events": events,
        "fully_paid": fully_paid,
        "partly_paid": partly_paid,
        "answers": answers,
        "retried": retried,
        "killed": killed,
        "occurred": occurred,
        "server": server,
        "worker": worker,
    }


def assert_exactly_once(partner, result, *, exact_202: bool):
    events, answers = result["events"], result["answers"]
    statuses = [s for _, s, _ in answers]
    assert len(answers) == len(events) * COPIES
    bad = [(e, s) for e, s, _ in answers if not 200 <= s < 300]
    assert not bad, f"{len(bad)} non-2xx answers, e.g. {bad[:5]}"
    accepted = [e for e, s, _ in answers if s == 202]
    if exact_202:  # one 202 per event, every other copy a 200 duplicate
        assert len(accepted) == len(set(accepted)) == len(events)
        assert statuses.count(200) == len(events) * (COPIES - 1)
    else:  # a retry after a lost answer is a duplicate: at most one 202 per event
        assert len(accepted) == len(set(accepted)) <= len(events)

    ids = {event_id for event_id, _ in events}
    stored = list(WebhookEvent.objects.filter(partner=partner).values_list("event_id", "status"))
    assert len(stored) == len(events) and {e for e, _ in stored} == ids
    assert {s for _, s in stored} == {"processed"}

    payments = Payment.objects.filter(partner=partner)
    assert payments.count() == len(events)
    assert payments.values("processor_payment_id").distinct().count() == len(events)
    assert set(payments.values_list("status", flat=True)) == {"succeeded"}

    fully = {inv.pk for inv in result["fully_paid"]}
    partly = {inv.pk for inv in result["partly_paid"]}
    invoices = {i.pk: i for i in Invoice.objects.filter(pk__in=fully | partly)}
    assert {pk for pk, i in invoices.items() if i.status == "paid"} == fully
    assert all(invoices[pk].outstanding > 0 for pk in partly)

    outbox = WritebackOutbox.objects.filter(partner=partner)
    assert outbox.count() == len(fully)
    assert set(outbox.values_list("invoice_id", flat=True)) == fully
    assert set(outbox.values_list("state", flat=True)) == {"done"}

    db = result["server"].db
    per_invoice: dict[int, int] = {}
    for entry in db.requests(entity="Invoices", method="PATCH"):
        at_id = (entry.get("body") or {}).get("id")
        per_invoice[at_id] = per_invoice.get(at_id, 0) + 1
    expected_day = ledger._partner_date(partner, result["occurred"]).isoformat()
    for pk in fully:
        at_id = invoices[pk].autotask_id
        assert per_invoice.get(at_id) == 1, (pk, at_id, per_invoice.get(at_id))
        assert (db.get_invoice(at_id)["paidDate"] or "")[:10] == expected_day
    for pk in partly:
        at_id = invoices[pk].autotask_id
        assert at_id not in per_invoice
        assert db.get_invoice(at_id)["paidDate"] is None
    assert sum(per_invoice.values()) == len(fully)


def test_wh4_storm_of_duplicated_webhooks_makes_each_payment_once(partner_a, storm_env, processes):
    result = storm(partner_a, storm_env, processes)
    assert_exactly_once(partner_a, result, exact_202=True)
    assert result["retried"] == 0


def test_wh5_gunicorn_worker_sigkilled_twice_during_the_storm(partner_a, storm_env, processes):
    result = storm(partner_a, storm_env, processes, kill_gunicorn_workers=2)
    assert len(result["killed"]) == 2
    assert_exactly_once(partner_a, result, exact_202=False)
