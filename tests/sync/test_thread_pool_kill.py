"""Issue 19: the sync queue's threads pool keeps the guarantees of the prefork pool.

A real worker (`-P threads -c 8`, tests/harness/workers.py) runs the first syncs of 4 partners
at once, each against its own Autotask database in the sandbox (100 ms a request). The whole
worker is SIGKILLed (with threads, every run in flight dies with the process) once each
partner has some pages written (each then held: its Autotask answers take 30 s); a new
worker starts and the reaper requeues the runs whose
heartbeat went stale. Pass: every run ends succeeded with every invoice once and no change-log
row twice; the runs really overlapped (syncs of several partners in flight at the same time);
no partner's database ever saw more than 3 requests in flight on one endpoint (the Redis
limiter's slots, shared by the threads); each page was fetched at most twice.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from invoices.models import Invoice
from sandbox.state import SandboxDatabase
from sync.models import ChangeLogEntry, SyncRun
from sync.services import leases, reaper
from tests.harness.sync import connect_to, sandbox_database
from tests.harness.workers import Worker, wait_for, worker_environment

from .concurrency_probe import ConcurrencyProbe

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PARTNERS = 4
INVOICES = 3_000
LATENCY_MS = 100
WORKER_LEASE_SECONDS = 6
WAIT = 120


def database(i: int) -> SandboxDatabase:
    return sandbox_database(
        f"fleet-{i}", seed=i + 1, companies=30, invoices=INVOICES, latency_ms=LATENCY_MS
    )


def settled(db) -> int:
    cutoff = (timezone.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return len(
        [i for i in db.invoices() if not i.get("isVoided") and i["createDateTime"] <= cutoff]
    )


def test_whole_threads_worker_killed_mid_fleet_every_run_resumes_once(
    make_sandbox, make_partner, tmp_path
):
    server = make_sandbox(databases=[database(i) for i in range(PARTNERS)])
    probes = [ConcurrencyProbe(db) for db in server.databases]
    env = worker_environment(server, lease_seconds=WORKER_LEASE_SECONDS)
    from config.celery import app

    app.control.purge()
    started: list[Worker] = []
    try:
        partners = [make_partner(f"Fleet {i}") for i in range(PARTNERS)]
        runs = [  # queued in the broker: the worker starts them together
            connect_to(p, db).first_run for p, db in zip(partners, server.databases, strict=True)
        ]
        first = Worker(env, tmp_path / "worker.log")
        assert first.pool == "threads" and first.concurrency == 8
        started.append(first.start())
        # Each partner's sync is held where it is once it has pages written (every further
        # answer takes 30 s), so all 4 are in flight together at the kill.
        held: set[int] = set()

        def hold_when_under_way() -> bool:
            for p, db in zip(partners, server.databases, strict=True):
                if p.id not in held and Invoice.objects.filter(partner=p).count() >= 500:
                    db.set_switches(latency_ms=30_000)
                    held.add(p.id)
            return len(held) == PARTNERS

        wait_for(hold_when_under_way, timeout=WAIT, interval=0.02, what="every sync under way")
        running = SyncRun.objects.filter(id__in=[r.id for r in runs], status="running").count()
        assert running == PARTNERS, [  # one process, 4 syncs at once
            (r.status, Invoice.objects.filter(partner=p).count(), settled(db), r.error_message)
            for r, p, db in zip(
                SyncRun.objects.filter(id__in=[r.id for r in runs]).order_by("id"),
                partners,
                server.databases,
                strict=True,
            )
        ]
        written = {p.id: Invoice.objects.filter(partner=p).count() for p in partners}
        first.kill()
        pairs = list(zip(partners, server.databases, strict=True))
        unfinished = sum(1 for p, db in pairs if written[p.id] < settled(db))
        assert unfinished == PARTNERS

        for db in server.databases:
            db.set_switches(latency_ms=LATENCY_MS)
        started.append(Worker(env, tmp_path / "worker2.log").start())
        later = timezone.now() + leases.LEASE + timedelta(seconds=1)
        requeued = reaper.reap_stuck_runs(now=later)["requeued"]
        assert requeued == unfinished

        def all_done() -> bool:
            return not SyncRun.objects.filter(
                id__in=[r.id for r in runs], status__in=SyncRun.ACTIVE
            ).exists()

        wait_for(all_done, timeout=WAIT, interval=0.2, what="every run finished")
    finally:
        for worker in started:
            worker.kill()
        for probe in probes:
            probe.stop()

    for partner, db, run, probe in zip(partners, server.databases, runs, probes, strict=True):
        run.refresh_from_db()
        assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
        invoices = Invoice.objects.filter(partner=partner)
        assert invoices.count() == settled(db)
        assert invoices.values("autotask_id").distinct().count() == invoices.count()
        changes = ChangeLogEntry.objects.filter(partner=partner)
        assert changes.count() == 0  # an initial sync changes nothing it created
        assert max(probe.max.values()) <= 3, probe.max
        pages = [
            e
            for e in db.requests(entity="Invoices", method="POST")
            if "/query" in e["path"] and "/count" not in e["path"]
        ]
        expected = -(-invoices.count() // 500)
        assert expected <= len(pages) <= expected + 3, len(pages)  # the read-ahead pages again
        assert not [e for e in db.requests() if e["status"] in (429, 500)]
    assert max(p.max_total for p in probes) >= 1
