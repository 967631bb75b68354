"""Issue 19: the daily re-read of unpaid (and recently paid) invoices by id reads its batches
up to 3 at a time (sync/prefetch.py `ParallelReads`), never more than 3 in flight per endpoint,
and applies them in id order: the same invoices, counts, cursor and change log as one batch at
a time.

Two sandbox databases generated from the same seed hold the same invoices; partner A re-reads
with 3 in flight, partner B one batch at a time (`REREAD_CONCURRENCY = 1`), after the same
drift in both (paid, voided, deleted in Autotask).
"""

from __future__ import annotations

import time
from datetime import date

import pytest

from invoices.models import Invoice
from sandbox.state import SandboxDatabase
from sync import prefetch
from sync import rereads as rereads_module
from sync.models import ChangeLogEntry, SyncRun
from sync.services.runs import execute_run, sync_run_create
from tests.harness.sandbox import reopen_paid_invoices
from tests.harness.sync import connect_to, sandbox_database

from .concurrency_probe import ConcurrencyProbe

pytestmark = pytest.mark.django_db

INVOICES = 2_000  # ~5 batches of 400 unpaid ids
LATENCY_MS = 250
MOMENTS = {"voided_at", "missing_in_autotask_since"}


def database(name: str) -> SandboxDatabase:
    # an invoice gone from Autotask: flagged missing
    return sandbox_database(
        name, seed=7, companies=20, invoices=INVOICES, switches={"invoice_delete": True}
    )


def run(partner, kind) -> SyncRun:
    created = sync_run_create(partner=partner, kind=kind, trigger=SyncRun.Trigger.MANUAL)
    done = execute_run(partner=partner, run_id=created.id)
    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    return done


def drift(db) -> None:
    """The same changes in either database, by position (both hold the same invoices)."""
    rows = sorted(db.invoices(), key=lambda r: r["id"])
    for row in rows[10:60]:
        db.set_invoice_paid_date(row["id"], date(2026, 3, 2))
    for row in rows[100:110]:
        db.void_invoice(row["id"])
    for row in rows[1500:1510]:
        db.delete_invoice(row["id"])


def snapshot(partner) -> tuple[list, list]:
    invoices = list(
        Invoice.objects.filter(partner=partner)
        .order_by("autotask_id")
        .values_list(
            "autotask_id",
            "status",
            "total",
            "voided",
            "paid_in_autotask_on",
            "missing_in_autotask_since",
        )
    )
    invoices = [(*row[:5], row[5] is not None) for row in invoices]
    changes = [
        # Moments (when each sandbox voided, when each run flagged) differ by seconds.
        (*row[:4], row[4] is not None if row[2] in MOMENTS else row[4])
        for row in ChangeLogEntry.objects.filter(partner=partner)
        .order_by("id")
        .values_list("record_type", "autotask_id", "field", "old_value", "new_value")
    ]
    return invoices, changes


def test_unpaid_rereads_3_in_flight_give_the_same_result_as_one_at_a_time(
    make_sandbox, make_partner, monkeypatch
):
    server = make_sandbox(databases=[database("parallel"), database("sequential")])
    parallel_db, sequential_db = server.databases
    reopen_paid_invoices(server)
    a, b = make_partner("Parallel IT"), make_partner("Sequential IT")
    for partner, db in ((a, parallel_db), (b, sequential_db)):
        first = connect_to(partner, db).first_run
        done = execute_run(partner=partner, run_id=first.id)
        assert done.status == SyncRun.Status.SUCCEEDED, done.error_message
        drift(db)
        db.latency_ms = LATENCY_MS
        db.reset_log()
    unpaid_ids = Invoice.objects.filter(partner=a, status__in=["open", "partially_paid"]).count()
    assert unpaid_ids > 3 * 400  # more batches than workers

    probe = ConcurrencyProbe(parallel_db)
    started = time.monotonic()
    parallel = run(a, SyncRun.Kind.UNPAID)
    parallel_wall = time.monotonic() - started
    probe.stop()

    monkeypatch.setattr(rereads_module, "REREAD_CONCURRENCY", 1)
    sequential_probe = ConcurrencyProbe(sequential_db)
    started = time.monotonic()
    sequential = run(b, SyncRun.Kind.UNPAID)
    sequential_wall = time.monotonic() - started
    sequential_probe.stop()

    # Never more than Autotask's 3 per endpoint, and 3 reached: the batches overlapped.
    assert probe.max["Invoices"] == 3, probe.max
    assert max(probe.max.values()) <= 3
    assert sequential_probe.max["Invoices"] == 1
    # The same result, applied in the same order.
    assert snapshot(a)[0] == snapshot(b)[0]
    assert snapshot(a)[1] == snapshot(b)[1]
    assert snapshot(a)[1]  # the drift was seen
    for field in ("fetched", "created", "updated", "unchanged", "skipped", "failed"):
        assert getattr(parallel, field) == getattr(sequential, field), field
    assert parallel.cursor["unpaid_after_id"] == sequential.cursor["unpaid_after_id"]
    assert parallel.requests_used == sequential.requests_used
    print(f"\nunpaid re-read: {parallel_wall:.2f} s with 3 in flight, {sequential_wall:.2f} s one "
          f"at a time ({parallel.requests_used} requests)")  # fmt: skip


def test_parallel_reads_yield_in_order_and_raise_in_order():
    """ParallelReads: results in key order whatever order the reads finish in; a failing read
    is raised when its key is reached, after the earlier ones; never more than `workers` reads
    at once."""
    import threading

    lock = threading.Lock()
    now, peak = [0], [0]

    def read(key):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.02 * (5 - key % 5))  # later keys finish first
        with lock:
            now[0] -= 1
        if key == 7:
            raise ValueError("read 7 failed")
        return key * 10

    seen = []
    with (
        pytest.raises(ValueError, match="read 7"),
        prefetch.ParallelReads(read, range(12), workers=3) as reads,
    ):
        for key, value in reads:
            seen.append((key, value))
    assert seen == [(k, k * 10) for k in range(7)]
    assert peak[0] == 3
