"""One sync per partner at a time, one owner per run (RELIABILITY.md §3, CQ-4, CQ-5, CQ-9).

Real threads, each with its own PostgreSQL connection (closed at the end), against the sandbox
over HTTP. "Running" is measured around `SyncEngine.execute`, the part that reads Autotask and
writes pages; pages fetched are read from the sandbox's request log.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.autotask.errors import AutotaskError
from invoices.models import Invoice
from sync.engine import SyncEngine
from sync.models import ChangeLogEntry, SyncRun, SyncState
from sync.services import leases
from sync.services.reaper import reap_stuck_runs
from sync.services.runs import MAX_ATTEMPTS, execute_run
from tests.harness.threads import in_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("join_threads")]

WAIT = 60  # seconds: the bound of every wait in this file


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Runs are executed here, not by a worker: record what would be enqueued."""
    from sync.tasks import run_sync

    sent: list[tuple] = []
    monkeypatch.setattr(run_sync, "delay", lambda *args: sent.append(args))
    return sent


@pytest.fixture
def in_flight(monkeypatch):
    """Counts concurrent `SyncEngine.execute` calls (and how many ran in all)."""
    lock = threading.Lock()
    stats = {"now": 0, "max": 0, "runs": []}
    original = SyncEngine.execute

    def execute(engine):
        with lock:
            stats["now"] += 1
            stats["max"] = max(stats["max"], stats["now"])
            stats["runs"].append(engine.run.id)
        try:
            return original(engine)
        finally:
            with lock:
                stats["now"] -= 1

    monkeypatch.setattr(SyncEngine, "execute", execute)
    return stats


@pytest.fixture
def pause_at_invoice_page(monkeypatch):
    """`pause(n)`: the engine stops before writing invoice page n (page n-1 is committed, page
    n fetched) until `.go` is set. `.paused` is set when it gets there."""

    class Pause:
        def __init__(self):
            self.paused = threading.Event()
            self.go = threading.Event()
            self.page = None
            self.seen = 0

    pause = Pause()
    original = SyncEngine._parse_records

    def parse(engine, record_type, items, *parsed):
        if record_type.ENTITY == "Invoices" and pause.page is not None:
            pause.seen += 1
            if pause.seen == pause.page:
                pause.paused.set()
                assert pause.go.wait(WAIT), "test never released the paused sync"
        return original(engine, record_type, items, *parsed)

    monkeypatch.setattr(SyncEngine, "_parse_records", parse)

    def at(page):
        pause.page = page
        return pause

    yield at
    pause.go.set()


def execute(run_id, partner):
    return execute_run(partner=partner, run_id=run_id)


def execute_until_done(run_id, partner, *, deadline):
    """What Celery does with RetryLater, without the countdown: try again until finished."""
    for _ in range(2_000):
        try:
            run = execute_run(partner=partner, run_id=run_id)
        except leases.RetryLater:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        if not run.is_active:
            return run
        time.sleep(0.02)
    raise AssertionError("run never finished")


def settled_invoices(db):
    cutoff = (timezone.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return [i for i in db.invoices() if not i.get("isVoided") and i["createDateTime"] <= cutoff]


def page_requests(db, entity):
    return [
        e
        for e in db.requests(entity=entity, method="POST")
        if "/query" in e["path"] and "/count" not in e["path"]
    ]


def test_20_concurrent_deliveries_of_one_run_sync_it_once(
    partner_a, make_sandbox, connect, in_flight
):
    server = make_sandbox(companies=100, invoices=2_000, latency_ms=20)
    run = connect(partner_a, server=server).first_run
    server.db.reset_log()
    barrier = threading.Barrier(20)

    def deliver():
        barrier.wait(WAIT)
        try:
            return execute(run.id, partner_a).status
        except leases.RetryLater:
            return "retry_later"

    threads = [in_thread(deliver) for _ in range(20)]
    for thread, _ in threads:
        thread.join(WAIT)
    outcomes = [r.get("value", r.get("error")) for _, r in threads]
    assert all(isinstance(o, str) for o in outcomes), outcomes
    assert in_flight["runs"] == [run.id]  # exactly one delivery ran the sync
    assert in_flight["max"] == 1
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.attempts == 1
    assert set(outcomes) <= {"retry_later", "running", "succeeded"}
    # Each page fetched once.
    invoices = Invoice.objects.filter(partner=partner_a)
    pages = page_requests(server.db, "Invoices")
    assert len(pages) == -(-invoices.count() // 500)
    assert len({e["path"] + repr(e["query"]) for e in pages}) == len(pages)
    assert len(page_requests(server.db, "Companies")) == 1
    assert invoices.count() == invoices.values("autotask_id").distinct().count()
    # The ones told to retry later find the run finished and send nothing.
    before = len(server.db.requests())
    assert execute(run.id, partner_a).status == SyncRun.Status.SUCCEEDED
    assert len(server.db.requests()) == before


@pytest.mark.parametrize("trial", range(3))
def test_runs_of_one_partner_started_together_never_overlap(
    partner_a, make_sandbox, connect, new_run, in_flight, trial
):
    server = make_sandbox(companies=20, invoices=600, latency_ms=5)
    first = connect(partner_a, server=server).first_run
    runs = [first] + [new_run(partner_a, SyncRun.Kind.INITIAL) for _ in range(7)]
    runs += [new_run(partner_a, SyncRun.Kind.UNPAID) for _ in range(2)]
    barrier = threading.Barrier(len(runs))
    deadline = time.monotonic() + WAIT

    def go(run):
        barrier.wait(WAIT)
        return execute_until_done(run.id, partner_a, deadline=deadline)

    threads = [in_thread(go, run) for run in runs]
    for thread, _ in threads:
        thread.join(WAIT)
    errors = [r["error"] for _, r in threads if "error" in r]
    assert not errors, errors
    assert in_flight["max"] == 1, "two syncs of one partner ran at the same time"
    assert sorted(in_flight["runs"]) == sorted(r.id for r in runs)
    syncs = SyncRun.objects.filter(partner=partner_a).exclude(kind=SyncRun.Kind.PDF)
    statuses = set(syncs.values_list("status", flat=True))
    assert statuses == {SyncRun.Status.SUCCEEDED}, list(
        SyncRun.objects.filter(partner=partner_a).values_list(
            "id", "kind", "status", "attempts", "error_kind", "error_message"
        )
    )
    invoices = Invoice.objects.filter(partner=partner_a)
    assert invoices.count() == len(settled_invoices(server.db))
    assert invoices.values("autotask_id").distinct().count() == invoices.count()
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exists()
    state = SyncState.objects.get(partner=partner_a)
    assert state.lease_owner is None


def test_duplicate_delivery_of_a_running_run_lets_no_other_run_in(
    partner_a, make_sandbox, connect, new_run, in_flight, pause_at_invoice_page
):
    """A second delivery of the running run (broker redelivery) must neither take the partner
    lease nor release it, or the partner's next run starts next to the first."""
    server = make_sandbox(companies=20, invoices=1_500)
    first = connect(partner_a, server=server).first_run
    pause = pause_at_invoice_page(2)
    thread, result = in_thread(execute, first.id, partner_a)
    assert pause.paused.wait(WAIT)

    with pytest.raises(leases.RetryLater):
        execute(first.id, partner_a)  # duplicate delivery: busy, try later
    second = new_run(partner_a, SyncRun.Kind.UNPAID)
    with pytest.raises(leases.RetryLater):
        execute(second.id, partner_a)  # another run of the partner must wait
    assert in_flight["runs"] == [first.id]

    pause.go.set()
    thread.join(WAIT)
    assert result["value"].status == SyncRun.Status.SUCCEEDED
    assert execute(second.id, partner_a).status == SyncRun.Status.SUCCEEDED
    assert in_flight["max"] == 1


def test_duplicate_delivery_does_not_fail_a_live_third_attempt(
    partner_a, make_sandbox, connect, pause_at_invoice_page
):
    """The attempt cap is for runs whose worker died, not for a live run on its 3rd try."""
    server = make_sandbox(companies=20, invoices=1_500)
    run = connect(partner_a, server=server).first_run
    SyncRun.objects.filter(id=run.id).update(attempts=MAX_ATTEMPTS - 1)
    pause = pause_at_invoice_page(2)
    thread, _ = in_thread(execute, run.id, partner_a)
    assert pause.paused.wait(WAIT)
    with contextlib.suppress(leases.RetryLater):
        execute(run.id, partner_a)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.RUNNING, (run.error_kind, run.error_message)
    assert run.finished_at is None
    pause.go.set()
    thread.join(WAIT)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.attempts == MAX_ATTEMPTS
    assert run.error_kind == ""


def _stale(run, attempts):
    long_ago = timezone.now() - leases.LEASE - timedelta(seconds=5)
    SyncRun.objects.filter(id=run.id).update(
        status=SyncRun.Status.RUNNING,
        owner=uuid.uuid4(),
        heartbeat_at=long_ago,
        started_at=long_ago,
        attempts=attempts,
    )


def test_reaper_requeues_a_stuck_run_and_fails_it_after_3_attempts(
    partner_a, make_sandbox, connect, new_run, no_broker
):
    server = make_sandbox(companies=20, invoices=600)
    run = connect(partner_a, server=server).first_run
    no_broker.clear()
    fresh = new_run(partner_a, SyncRun.Kind.UNPAID)
    SyncRun.objects.filter(id=fresh.id).update(
        status=SyncRun.Status.RUNNING, owner=uuid.uuid4(), heartbeat_at=timezone.now()
    )
    no_broker.clear()

    _stale(run, attempts=1)
    assert reap_stuck_runs() == {"requeued": 1, "failed": 0}
    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED and run.owner is None
    assert no_broker == [(partner_a.id, run.id)]  # enqueued again
    fresh.refresh_from_db()
    assert fresh.status == SyncRun.Status.RUNNING  # a live run is left alone

    # The requeued run resumes and finishes.
    SyncRun.objects.filter(id=fresh.id).update(status=SyncRun.Status.SUCCEEDED)
    assert execute(run.id, partner_a).status == SyncRun.Status.SUCCEEDED

    stuck = new_run(partner_a, SyncRun.Kind.INITIAL)
    _stale(stuck, attempts=MAX_ATTEMPTS)
    no_broker.clear()
    assert reap_stuck_runs() == {"requeued": 0, "failed": 1}
    stuck.refresh_from_db()
    assert stuck.status == SyncRun.Status.FAILED
    assert stuck.error_kind == "worker_lost"
    assert "3 attempts" in stuck.error_message
    assert stuck.finished_at is not None
    assert no_broker == []
    # Visible in the partner's sync history.
    assert SyncRun.objects.for_partner(partner_a).filter(status="failed").get().id == stuck.id


@pytest.mark.parametrize("how", ["reaper", "other_owner"])
def test_lost_lease_stops_the_old_owner_without_writing(
    partner_a, make_sandbox, connect, pause_at_invoice_page, how
):
    """CQ-4: between two pages the run is given to someone else; the old owner's next page
    rolls back and it stops; the new owner resumes after the last committed page."""
    server = make_sandbox(companies=20, invoices=2_000)
    run = connect(partner_a, server=server).first_run
    pause = pause_at_invoice_page(2)
    thread, result = in_thread(execute, run.id, partner_a)
    assert pause.paused.wait(WAIT)
    written = Invoice.objects.filter(partner=partner_a).count()
    assert written == 500
    run.refresh_from_db()
    cursor = dict(run.cursor)
    if how == "reaper":
        later = timezone.now() + leases.LEASE + timedelta(seconds=1)
        assert reap_stuck_runs(now=later)["requeued"] == 1
    else:
        SyncRun.objects.filter(id=run.id).update(owner=uuid.uuid4())

    pause.go.set()
    thread.join(WAIT)
    assert "error" not in result, result
    assert Invoice.objects.filter(partner=partner_a).count() == written  # page 2 rolled back
    run.refresh_from_db()
    assert run.cursor == cursor
    assert run.status != SyncRun.Status.SUCCEEDED

    if how == "other_owner":  # the "other owner" died too: the reaper hands the run back
        later = timezone.now() + leases.LEASE + timedelta(seconds=1)
        assert reap_stuck_runs(now=later)["requeued"] == 1
    server.db.reset_log()
    done = execute(run.id, partner_a)
    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    invoices = Invoice.objects.filter(partner=partner_a)
    assert invoices.count() == invoices.values("autotask_id").distinct().count()
    assert invoices.count() == len(settled_invoices(server.db))
    # Resumed after page 1: only the pages after it are fetched again.
    assert len(page_requests(server.db, "Invoices")) == -(-(invoices.count() - written) // 500)
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exists()


def test_a_run_that_lost_the_partner_lease_stops_before_its_next_page(
    partner_a, make_sandbox, connect, new_run, pause_at_invoice_page, in_flight
):
    """A worker asleep past the lease (e.g. a long Retry-After) whose partner lease went to
    the partner's next run must not write again when it wakes: two runs would then write one
    partner's rows at the same time."""
    server = make_sandbox(companies=20, invoices=2_000)
    first = connect(partner_a, server=server).first_run
    pause = pause_at_invoice_page(2)
    thread, result = in_thread(execute, first.id, partner_a)
    assert pause.paused.wait(WAIT)
    long_ago = timezone.now() - leases.LEASE - timedelta(seconds=5)
    SyncRun.objects.filter(id=first.id).update(heartbeat_at=long_ago)
    SyncState.objects.filter(partner=partner_a).update(lease_heartbeat_at=long_ago)

    second = execute(new_run(partner_a, SyncRun.Kind.UNPAID).id, partner_a)
    assert second.status == SyncRun.Status.SUCCEEDED
    written = Invoice.objects.filter(partner=partner_a).count()
    pause.go.set()
    thread.join(WAIT)
    assert "error" not in result, result
    assert Invoice.objects.filter(partner=partner_a).count() == written  # nothing more
    first.refresh_from_db()
    assert first.status == SyncRun.Status.RUNNING  # left to the reaper, which requeues it
    assert reap_stuck_runs(now=timezone.now() + leases.LEASE)["requeued"] == 1
    assert execute(first.id, partner_a).status == SyncRun.Status.SUCCEEDED
    assert Invoice.objects.filter(partner=partner_a).count() == len(settled_invoices(server.db))


def test_a_live_owner_slower_than_the_lease_keeps_it_by_its_heartbeat(
    partner_a, make_sandbox, connect, new_run, pause_at_invoice_page, in_flight, monkeypatch
):
    """CQ-4 with a short lease: the owner waits on one page for 3 leases; its heartbeat thread
    keeps both leases fresh, so neither a duplicate delivery, another run nor the reaper takes
    it over, and they are told to come back when the lease would go stale."""
    monkeypatch.setattr(leases, "LEASE", timedelta(seconds=1.5))
    server = make_sandbox(companies=20, invoices=1_500)
    run = connect(partner_a, server=server).first_run
    pause = pause_at_invoice_page(2)
    thread, result = in_thread(execute, run.id, partner_a)
    assert pause.paused.wait(WAIT)
    time.sleep(3 * leases.LEASE.total_seconds())

    with pytest.raises(leases.RetryLater) as same:
        execute(run.id, partner_a)  # a duplicate delivery of the live run
    assert not same.value.jitter
    assert 0 < same.value.countdown <= leases.LEASE.total_seconds() + leases.RETRY_MARGIN
    other = new_run(partner_a, SyncRun.Kind.UNPAID)
    with pytest.raises(leases.RetryLater) as busy:
        execute(other.id, partner_a)
    assert busy.value.countdown >= leases.BUSY_COUNTDOWN
    assert reap_stuck_runs() == {"requeued": 0, "failed": 0}
    run.refresh_from_db()
    assert run.status == SyncRun.Status.RUNNING and run.attempts == 1
    assert timezone.now() - run.heartbeat_at < leases.LEASE

    pause.go.set()
    thread.join(WAIT)
    assert result["value"].status == SyncRun.Status.SUCCEEDED
    assert result["value"].attempts == 1
    assert in_flight["runs"] == [run.id]
    assert SyncState.objects.get(partner=partner_a).lease_owner is None


def test_a_hung_owner_stops_renewing_past_the_time_limit_and_is_fenced(
    partner_a, make_sandbox, connect, pause_at_invoice_page, in_flight, monkeypatch, no_broker
):
    """The threads pool cannot kill a hung sync the way prefork's hard time limit did: the
    heartbeat stops renewing after max_ownership(), the lease goes stale, the reaper requeues
    the run with its owner cleared, a new delivery finishes it, and the hung owner, released
    afterwards, writes nothing (LeaseLost before its next page)."""
    monkeypatch.setattr(leases, "LEASE", timedelta(seconds=1.5))
    monkeypatch.setattr(leases, "max_ownership", lambda: timedelta(seconds=2))
    server = make_sandbox(companies=20, invoices=1_500)
    run = connect(partner_a, server=server).first_run
    pause = pause_at_invoice_page(2)
    thread, result = in_thread(execute, run.id, partner_a)
    assert pause.paused.wait(WAIT)
    sent_before = len(no_broker)

    deadline = time.monotonic() + WAIT
    while reap_stuck_runs()["requeued"] == 0:  # stale once renewals stop (2 s + a lease)
        assert time.monotonic() < deadline, "the hung owner's lease never went stale"
        time.sleep(0.2)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED and run.owner is None
    assert no_broker[sent_before:] == [(partner_a.id, run.id)]  # requeued for a worker

    pause.page = None  # the new owner is not paused
    finished = execute_until_done(run.id, partner_a, deadline=time.monotonic() + WAIT)
    assert finished.status == SyncRun.Status.SUCCEEDED and finished.attempts == 2
    written = Invoice.objects.filter(partner=partner_a).count()
    assert written == len(settled_invoices(server.db))

    pause.go.set()  # the hung owner wakes up: fenced, it stops without writing
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result["value"].id == run.id and "error" not in result
    assert Invoice.objects.filter(partner=partner_a).count() == written
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED and run.attempts == 2
    assert SyncState.objects.get(partner=partner_a).lease_owner is None


def test_a_redelivered_run_is_told_to_retry_when_its_dead_owners_lease_goes_stale(
    partner_a, make_sandbox, connect
):
    """CQ-2: the pool child was SIGKILLed 1 s after its last heartbeat; the task is redelivered
    at once. It may not take over yet (the owner might be alive), but it is retried as soon as
    the lease is stale, not after a fixed wait."""
    server = make_sandbox(companies=20, invoices=600)
    run = connect(partner_a, server=server).first_run
    beat = timezone.now() - timedelta(seconds=1)
    dead = uuid.uuid4()
    SyncRun.objects.filter(id=run.id).update(
        status=SyncRun.Status.RUNNING, owner=dead, heartbeat_at=beat, attempts=1
    )
    leases.sync_state_for(partner_a)
    SyncState.objects.filter(partner=partner_a).update(
        lease_run=run, lease_owner=dead, lease_heartbeat_at=beat
    )
    with pytest.raises(leases.RetryLater) as retry:
        execute(run.id, partner_a)
    stale_in = leases.LEASE.total_seconds() - 1
    assert not retry.value.jitter
    assert stale_in <= retry.value.countdown <= stale_in + leases.RETRY_MARGIN + 1

    # Once it is stale, the next delivery takes the run over: attempt 2, to the end.
    later = beat - leases.LEASE
    SyncRun.objects.filter(id=run.id).update(heartbeat_at=later)
    SyncState.objects.filter(partner=partner_a).update(lease_heartbeat_at=later)
    done = execute(run.id, partner_a)
    assert (done.status, done.attempts) == (SyncRun.Status.SUCCEEDED, 2)


def test_polite_requeues_do_not_use_up_the_attempts_of_lost_workers(
    partner_a, make_sandbox, connect, monkeypatch
):
    """Throttled three times, then lost once: still resumed, not failed as "worker lost"."""
    server = make_sandbox(companies=20, invoices=600)
    run = connect(partner_a, server=server).first_run
    original = SyncEngine.execute
    calls = []

    def throttled_thrice(engine):
        calls.append(engine.run.id)
        if len(calls) <= 3:
            raise AutotaskError("Autotask is busy")
        return original(engine)

    monkeypatch.setattr(SyncEngine, "execute", throttled_thrice)
    for _ in range(3):
        with pytest.raises(leases.RetryLater):
            execute(run.id, partner_a)
        run.refresh_from_db()
        assert (run.status, run.attempts) == (SyncRun.Status.QUEUED, 0)
    _stale(run, attempts=1)  # the 4th attempt's worker was lost
    done = execute(run.id, partner_a)
    assert (done.status, done.attempts) == (SyncRun.Status.SUCCEEDED, 2), done.error_message
