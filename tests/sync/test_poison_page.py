"""CQ-5: a page that kills its process every time it is fetched.

A real Celery worker (tests/harness/workers.py) runs a partner's first sync against the
in-process sandbox. The third Invoices page is poison: whenever a worker asks for it, the
sandbox holds the request unanswered and the test SIGKILLs the pool child on the other end of
that connection (found by its port, by pid, never by name), once the page before it is
committed. Celery redelivers the task each time (task_reject_on_worker_lost); each delivery
that takes the run over counts an attempt.

Pass: the run is attempted MAX_ATTEMPTS (3) times, the poison page is fetched 3 times, then the
run ends FAILED ("worker_lost", a message saying it was given up) where ops and the partner see
it (API sync-runs endpoint); nothing is written twice; no 4th attempt comes in a while after;
and the partner is not stuck: its next sync, started from the API, runs to the end.

Kills: the attempt cap in execute_run removed (every redelivery takes the run again, forever):
the 4th fetch of the poison page fails the test at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from invoices.models import Invoice
from sandbox.api import Response
from sandbox.server import _Handler
from sync.models import ChangeLogEntry, SyncRun
from sync.services.runs import MAX_ATTEMPTS
from sync.wording import plain_error
from tests.harness.workers import Worker, socket_owner, wait_for, worker_environment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

INVOICES = 2_000  # 4 pages of 500
POISON_PAGE = 3
WORKER_LEASE_SECONDS = 6  # the worker's sync lease (production: 30 s)
HOLD_SECONDS = 30  # how long the sandbox holds the poison page (the worker is dead long before)
WAIT = 120  # seconds: the bound of the whole poisoned run
QUIET = 2 * WORKER_LEASE_SECONDS + 5  # after the failure: long enough for a 4th attempt to show


class PoisonPage:
    """Sandbox hook. Learns the poison page on the first attempt (the POISON_PAGE-th Invoices
    page answered, known by its first invoice id) and from then on answers any request for it
    with nothing: the connection is held open. Each such fetch is put on `fetches` as the
    client's port. `disarm()` lets the page through again."""

    def __init__(self, server, monkeypatch):
        self.fetches: queue.Queue[int] = queue.Queue()
        self.fetched = 0
        self.first_id: int | None = None
        self.before_last_id: int | None = None  # last invoice id of the page before it
        self.armed = True
        self._pages = 0
        self._last_id: int | None = None
        self._lock = threading.Lock()
        self._peer = threading.local()
        original_dispatch = _Handler._dispatch
        original_query = server.api._query
        peer = self._peer

        def dispatch(handler, method):
            peer.port = handler.client_address[1]
            return original_dispatch(handler, method)

        def query(db, entity, req):
            response = original_query(db, entity, req)
            if entity.name != "Invoices" or response.status != 200:
                return response
            ids = [item["id"] for item in json.loads(response.body)["items"]]
            return self._answer(ids) or response

        monkeypatch.setattr(_Handler, "_dispatch", dispatch)
        monkeypatch.setattr(server.api, "_query", query)

    def _answer(self, ids: list[int]) -> Response | None:
        with self._lock:
            if not ids or not self.armed:
                return None
            if self.first_id is None:
                self._pages += 1
                if self._pages < POISON_PAGE:
                    self._last_id = ids[-1]
                    return None
                self.first_id, self.before_last_id = ids[0], self._last_id
            if self.first_id not in ids:
                return None
            self.fetched += 1
            self.fetches.put(self._peer.port)
        return Response(0, hold_then_drop=HOLD_SECONDS)

    def disarm(self) -> None:
        with self._lock:
            self.armed = False


@pytest.fixture
def worker_env(make_sandbox):
    server = make_sandbox(companies=100, invoices=INVOICES, latency_ms=10)
    from config.celery import app

    app.control.purge()  # nothing left over from earlier tests
    return server, worker_environment(server, lease_seconds=WORKER_LEASE_SECONDS)


@pytest.fixture
def worker(worker_env, tmp_path):
    _, env = worker_env
    # Prefork: each attempt's death is its pool child's, redelivered at once; on the sync
    # queue's threads pool a lost attempt is the whole worker's (tests/sync/test_worker_kill.py).
    started = Worker(env, tmp_path / "worker.log", pool="prefork")
    try:
        yield started.start()
    finally:
        started.kill()  # always, before the database is flushed


def settled_count(db) -> int:
    cutoff = (timezone.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return len(
        [i for i in db.invoices() if not i.get("isVoided") and i["createDateTime"] <= cutoff]
    )


def invoice_pages(db) -> list[dict]:
    return [
        e
        for e in db.requests(entity="Invoices", method="POST")
        if "/query" in e["path"] and "/count" not in e["path"]
    ]


def assert_written_once(partner) -> None:
    invoices = Invoice.objects.filter(partner=partner)
    assert invoices.values("autotask_id").distinct().count() == invoices.count()
    changes = ChangeLogEntry.objects.filter(partner=partner)
    keys = list(changes.values_list("record_type", "record_id", "field", "new_value"))
    assert len(keys) == len(set(keys))
    assert changes.count() == 0  # a first sync (and a rerun of unchanged data) changes nothing


def kill_fetcher(worker: Worker, port: int) -> int:
    """SIGKILL the pool child on the client side of the connection from `port`."""
    kids = worker.pool_children()
    pid = wait_for(
        lambda: socket_owner(port, worker.pool_children()),
        timeout=3,
        interval=0.02,
        what=f"the pool child holding port {port}",
    )
    assert pid in kids and pid != worker.pid, (pid, kids, worker.pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in worker.pool_children(), timeout=10, what=f"pid {pid} dead")
    return pid


def test_a_page_that_kills_its_worker_every_time_fails_the_run_after_3_attempts(
    partner_a, connect, api_a, worker_env, worker, monkeypatch
):
    server, _ = worker_env
    poison = PoisonPage(server, monkeypatch)
    run = connect(partner_a, server=server).first_run  # run_sync.delay on commit
    started = time.monotonic()
    killed: list[tuple[float, int, int]] = []  # (seconds since start, pid, attempts then)
    deadline = started + WAIT

    def committed_before_poison() -> bool:
        run.refresh_from_db()
        return (run.cursor or {}).get("invoices_after_id") == poison.before_last_id

    while True:
        try:
            port = poison.fetches.get(timeout=0.1)
        except queue.Empty:
            run.refresh_from_db()
            if not run.is_active:
                break
            assert time.monotonic() < deadline, f"run still {run.status} after {WAIT} s"
            continue
        # The page before the poison one is committed while the poison page is held (the
        # engine reads one page ahead): wait for it, so each attempt dies on the same page.
        with contextlib.suppress(TimeoutError):
            wait_for(committed_before_poison, timeout=3, interval=0.02, what="page committed")
        pid = kill_fetcher(worker, port)
        run.refresh_from_db()
        killed.append((time.monotonic() - started, pid, run.attempts))
        assert poison.fetched <= MAX_ATTEMPTS, (
            f"attempt {run.attempts}: the poison page was fetched {poison.fetched} times; "
            f"the run must fail after {MAX_ATTEMPTS} lost workers (kills: {killed})"
        )
    failed_after = time.monotonic() - started
    print(
        f"\nCQ-5 poison page: killed {[(round(t, 1), a) for t, _, a in killed]} "
        f"(s since start, attempts); {run.status} after {failed_after:.1f} s"
    )

    # Failed after 3 attempts, with a message that says so, where ops and the partner look.
    assert run.status == SyncRun.Status.FAILED, (run.status, run.error_kind, run.error_message)
    assert run.attempts == MAX_ATTEMPTS
    assert len(killed) == MAX_ATTEMPTS == poison.fetched
    assert len({pid for _, pid, _ in killed}) == len(killed)  # a new pool child each time
    assert [a for _, _, a in killed] == [1, 2, 3]
    assert run.error_kind == "worker_lost"
    assert "3 attempts" in run.error_message and "lost" in run.error_message
    assert run.finished_at is not None and run.owner is None
    shown = api_a.get(f"/api/v1/sync-runs/{run.id}/")
    assert shown.status_code == 200
    assert shown.json()["status"] == "failed"
    assert shown.json()["error_message"] == run.error_message
    listed = api_a.get("/api/v1/sync-runs/", {"status": "failed"}).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["id"] for r in rows] == [run.id]
    assert "given up" in plain_error(run)

    # Nothing written twice: the pages before the poison page, once each.
    written = Invoice.objects.filter(partner=partner_a).count()
    assert 0 < written <= (POISON_PAGE - 1) * 500
    assert_written_once(partner_a)
    answered = [e for e in invoice_pages(server.db) if not e["dropped"]]
    held = [e for e in invoice_pages(server.db) if e["dropped"]]
    assert len(answered) == POISON_PAGE - 1, answered  # each page before the poison one once
    assert len(held) == MAX_ATTEMPTS  # the poison page: 3 times, never answered

    # No 4th attempt: the run stays failed and the page is not asked for again.
    time.sleep(QUIET)
    run.refresh_from_db()
    assert (run.status, run.attempts) == (SyncRun.Status.FAILED, MAX_ATTEMPTS)
    assert poison.fetched == MAX_ATTEMPTS
    assert poison.fetches.empty()
    assert len(invoice_pages(server.db)) == POISON_PAGE - 1 + MAX_ATTEMPTS
    assert worker.proc.poll() is None  # the worker itself survived every kill

    # The partner is not stuck: its next sync (Fetch New Data, from the API) runs to the end.
    poison.disarm()
    started_next = api_a.post("/api/v1/sync/fetch-new-data/")
    assert started_next.status_code == 202, started_next.content
    after = SyncRun.objects.get(id=started_next.json()["id"])

    def finished():
        after.refresh_from_db()
        return not after.is_active

    wait_for(finished, timeout=WAIT, interval=0.1, what=f"run {after.id} finished")
    assert after.status == SyncRun.Status.SUCCEEDED, (after.error_kind, after.error_message)
    assert after.attempts == 1
    assert Invoice.objects.filter(partner=partner_a).count() == settled_count(server.db)
    assert_written_once(partner_a)
