"""Issue 19 item 6: sync workers on two hosts share the per-database limits and split the work.

Two real Celery workers (`-Q sync,default -P threads -c 4`, tests/harness/workers.py), each
started as a separate host would start it: its own process and pool, its own hostname (`-n`),
no state shared but the one Redis (broker, limiter, zone cache) and the one PostgreSQL. Ten
partners are connected to two Autotask databases of the sandbox, five to each (one API user
per database, as MSP offices sharing a tenant would be), 300 ms on every request: up to eight
syncs at once, five of them on one database, want more than Autotask's 3 requests in flight per
endpoint. The connect's first syncs run, then two hourly slots, each ticked twice (a second
beat, or a redelivered tick). Pass:

- both workers finished runs (their logs: "sync run N finished"), and the runs of one database
  overlapped across the two workers (so the limit had to be shared between processes to hold);
- every partner has exactly one run per slot, succeeded, finished by exactly one worker once;
- the sandbox never saw more than 3 requests in flight per endpoint per database (its own
  thread-limit slots, tests/sync/concurrency_probe.py; its limit raised to 20 here, so a 4th
  would have been served and recorded, not refused), saw 3 at some point (the limit was
  reached, not avoided) and refused nothing (no 429/500).

Checked against a mutant: with a per-process limiter in each worker instead of the shared Redis
one, the probe records 4-5 in flight and the test fails.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from sandbox.state import SandboxDatabase
from sync import dispatch
from sync.models import SyncRun
from tests.harness.sync import connect_to, sandbox_database
from tests.harness.workers import Worker, wait_for, worker_environment

from .concurrency_probe import ConcurrencyProbe

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DATABASES = 2
PARTNERS_PER_DATABASE = 5
LATENCY_MS = 300
THREADS = 4
WAIT = 120


def database(i: int) -> SandboxDatabase:
    return sandbox_database(
        f"office-{i}", seed=i + 1, companies=6, invoices=40, latency_ms=LATENCY_MS
    )


def most_at_once_on_both(intervals: list[tuple]) -> int:
    """The most intervals open at one instant while both workers had some open."""
    events = []
    for start, end, worker in intervals:
        events += [(start, 1, worker), (end, -1, worker)]
    events.sort(key=lambda e: (e[0], e[1]))
    open_now: Counter = Counter()
    best = 0
    for _, step, worker in events:
        open_now[worker] += step
        if sum(1 for n in open_now.values() if n > 0) == 2:
            best = max(best, sum(open_now.values()))
    return best


def test_two_worker_hosts_share_the_limits_and_split_the_runs(
    make_sandbox, make_partner, tmp_path, monkeypatch
):
    server = make_sandbox(databases=[database(i) for i in range(DATABASES)])
    for db in server.databases:  # Autotask refuses a 4th; here it would serve it and record it
        db.set_switches(thread_limit=20)
    probes = [ConcurrencyProbe(db) for db in server.databases]
    env = worker_environment(server)
    monkeypatch.setattr(dispatch, "PERIODS", {SyncRun.Kind.NEW_DATA: timedelta(hours=1)})
    from config.celery import app

    app.control.purge()
    workers = [
        Worker(env, tmp_path / f"{name}.log", concurrency=THREADS, hostname=f"{name}@{host}")
        for name, host in (("sync1", "host-a"), ("sync2", "host-b"))
    ]
    try:
        for worker in workers:  # both ready before any run is queued
            worker.start()
        assert all(w.pool == "threads" for w in workers)
        assert "sync1@host-a ready." in workers[0].log()
        assert "sync2@host-b ready." in workers[1].log()

        partners, home = [], {}
        for i in range(DATABASES * PARTNERS_PER_DATABASE):
            partner = make_partner(f"Office {i}")
            # In blocks: a slot queues one database's runs one after the other.
            db = server.databases[i // PARTNERS_PER_DATABASE]
            connect_to(partner, db)  # queues its first sync
            partners.append(partner)
            home[partner.id] = db
        ids = [p.id for p in partners]
        active = SyncRun.objects.filter(partner_id__in=ids, status__in=SyncRun.ACTIVE)

        def settled() -> bool:
            return not active.exists()

        wait_for(settled, timeout=WAIT, interval=0.2, what="the first syncs finished")
        connected = timezone.now()
        slots = []
        for hour in (1, 2):  # two hourly slots, each ticked twice
            at = connected + timedelta(hours=hour, minutes=1)
            created = dispatch.dispatch_due_runs(now=at)
            assert len(created) == len(partners)
            assert dispatch.dispatch_due_runs(now=at) == []  # a second beat, same minute
            slots.append({run.id for run in created})
            wait_for(settled, timeout=WAIT, interval=0.2, what=f"slot {hour} finished")
        # A task logs "finished" just after its run's row says so: wait for the last lines.
        every = set(SyncRun.objects.filter(partner_id__in=ids).values_list("id", flat=True))
        wait_for(
            lambda: every <= {r for w in workers for r in w.finished_runs()},
            timeout=10,
            what="every run in a worker's log",
        )
    finally:
        for worker in workers:
            worker.kill()
        for probe in probes:
            probe.stop()

    finished = {w.hostname: w.finished_runs() for w in workers}
    ran_by: dict[int, list[str]] = {}
    for host, run_ids in finished.items():
        for run_id in run_ids:
            ran_by.setdefault(run_id, []).append(host)
    runs = list(SyncRun.objects.filter(partner_id__in=ids).order_by("id"))
    for partner in partners:  # the connect's (initial sync, invoice PDFs), then one a slot
        mine = [r for r in runs if r.partner_id == partner.id]
        assert sorted(r.kind for r in mine if not r.slot) == ["initial", "pdf"], mine
        assert len({r.slot for r in mine if r.slot}) == len([r for r in mine if r.slot]) == 2
    for run in runs:
        assert run.status == SyncRun.Status.SUCCEEDED, (run.id, run.error_kind, run.error_message)
        assert len(ran_by.get(run.id, [])) == 1, (run.id, ran_by.get(run.id))
    for slot_runs in slots:  # every partner once per slot
        slot_of = SyncRun.objects.filter(id__in=slot_runs)
        assert sorted(slot_of.values_list("partner_id", flat=True)) == sorted(ids)
        assert len(set(slot_of.values_list("slot", flat=True))) <= len(partners)
    assert not set(ran_by) - {r.id for r in runs}  # nothing else ran

    # The work was split, and the two hosts were on one database at the same time.
    counts = {host: len(run_ids) for host, run_ids in finished.items()}
    assert all(n >= 3 for n in counts.values()), counts
    overlapping = []
    for db in server.databases:
        intervals = [
            (run.started_at, run.finished_at, ran_by[run.id][0])
            for run in runs
            if home[run.partner_id] is db
        ]
        overlapping.append(most_at_once_on_both(intervals))
    assert max(overlapping) > 3, overlapping

    # The limits held across both processes: the sandbox's record, not ours.
    for db, probe in zip(server.databases, probes, strict=True):
        assert probe.max and max(probe.max.values()) <= 3, (db, probe.max)
        assert not [e for e in db.requests() if e["status"] in (429, 500)]
    assert max(max(p.max.values()) for p in probes) == 3  # the limit was reached, not avoided
