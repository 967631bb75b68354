"""Bench: the scheduled syncs after the initial one (PRODUCT.md "Targets").

    .venv/bin/python bench/sync_incremental.py [--invoices 55000] [--companies 500]
        [--latency-ms 100]

After an initial sync (55,000 sandbox invoices give ~5,000 unpaid ones): the hourly "new data"
sync with nothing new (target <= 3 requests) and the daily unpaid sync, which re-reads every
unpaid invoice by id, <= 400 ids per `in` query (target <= 15 requests for 5,000 unpaid
invoices). Prints requests (the run's own count and the
sandbox's log), the minimum, and the wall time. Uses DATABASE_URL / REDIS_URL when set, else
throwaway servers; the sandbox runs in its own process.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=55_000)
    parser.add_argument("--companies", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=100)
    args = parser.parse_args()

    common.start_services()
    common.migrate()
    sandbox = common.Sandbox(
        companies=args.companies, invoices=args.invoices, latency_ms=args.latency_ms
    )
    common.setup_django()
    from invoices.models import Invoice, InvoiceStatus
    from sync.models import SyncRun
    from sync.services.runs import execute_run, sync_run_create

    conn = common.connect_partner()
    partner = conn.partner

    def run(kind=None, first=None):
        sync_run = first or sync_run_create(
            partner=partner, kind=kind, trigger=SyncRun.Trigger.SCHEDULE, enqueue=False
        )
        before = len(sandbox.requests())
        started = time.perf_counter()
        done = execute_run(partner=partner, run_id=sync_run.id)
        wall = time.perf_counter() - started
        assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
        return done, len(sandbox.requests()) - before, wall

    initial, _, wall = run(first=conn.first_run)
    print(f"initial sync:       {initial.created} rows, {initial.requests_used} requests, "
          f"{wall:.1f} s (latency {args.latency_ms} ms)")  # fmt: skip
    ok = True

    hourly, logged, wall = run(SyncRun.Kind.NEW_DATA)
    print(f"\nhourly, nothing new: {hourly.requests_used} requests (sandbox log {logged}; "
          f"target <= 3), {wall:.2f} s, changed {hourly.created + hourly.updated}")  # fmt: skip
    ok &= hourly.requests_used <= 3 and hourly.created == hourly.updated == 0

    unpaid_count = (
        Invoice.objects.for_partner(partner)
        .filter(
            source="autotask",
            archived_at__isnull=True,
            status__in=[InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID],
        )
        .count()
    )
    daily, logged, wall = run(SyncRun.Kind.UNPAID)
    # + payment terms + the id reconcile's listing (one page of ids created in its window)
    minimum = math.ceil(unpaid_count / 400) + 2
    print(f"daily unpaid:       {unpaid_count} unpaid invoices re-read with "
          f"{daily.requests_used} requests (sandbox log {logged}); minimum {minimum} "
          f"(ceil({unpaid_count}/400) + terms + 1 reconcile listing); target <= 15; "
          f"{wall:.2f} s")  # fmt: skip
    ok &= daily.requests_used <= 15
    sandbox.stop()
    print("\nall targets met" if ok else "\nSOME TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
