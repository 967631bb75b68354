"""Bench: the scheduled syncs after the initial one (PRODUCT.md "Targets").

    .venv/bin/python bench/sync_incremental.py [--invoices 55000] [--companies 500]
        [--latency-ms 100]

After an initial sync (55,000 sandbox invoices give ~5,000 unpaid ones): the hourly "new data"
sync with nothing new (target <= 3 requests) and the daily unpaid sync, which re-reads every
unpaid invoice and those paid in the last 60 days (in Autotask or here) by id, <= 400 ids per
`in` query (target <= 20 requests for 5,000 unpaid and 2,000 recently paid). Prints requests
(the run's own count and the sandbox's log), the minimum, and the wall time. Uses
DATABASE_URL / REDIS_URL when set, else throwaway servers; the sandbox runs in its own process.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=55_000)
    parser.add_argument("--companies", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument(
        "--recently-paid",
        type=int,
        default=2_000,
        help="recently paid invoices in the target mix (issue 16: 5,000 unpaid + 2,000 paid)",
    )
    args = parser.parse_args()

    common.start_services()
    common.migrate()
    sandbox = common.Sandbox(
        companies=args.companies, invoices=args.invoices, latency_ms=args.latency_ms
    )
    common.setup_django()
    from django.db.models import Q
    from django.utils import timezone

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
    since = timezone.now() - timedelta(days=60)  # sync.engine.RECENTLY_PAID
    recently_paid = (
        Invoice.objects.for_partner(partner)
        .filter(source="autotask", status=InvoiceStatus.PAID)
        .filter(
            Q(paid_in_autotask_on__gte=since.date())
            | Q(paid_in_autotask_on__isnull=True, updated_at__gte=since)
        )
        .order_by("-autotask_id")
    )

    def daily(label: str, target: int | None) -> bool:
        paid_count = recently_paid.count()
        seen = len(sandbox.requests())
        done, logged, wall = run(SyncRun.Kind.UNPAID)
        asked = Counter(f"{r.get('method')} {r.get('entity')}" for r in sandbox.requests()[seen:])
        reread = unpaid_count + paid_count
        # + the id reconcile's listing (one page of ids created in its window) + the daily
        # re-read of every company (one page); payment terms only if an invoice lacks a dueDate
        minimum = math.ceil(reread / 400) + 2
        goal = f"target <= {target}" if target else "no target: the sandbox's own mix"
        print(f"daily unpaid ({label}): {unpaid_count} unpaid + {paid_count} recently paid "
              f"re-read with {done.requests_used} requests (sandbox log {logged}); minimum "
              f"{minimum} (ceil({reread}/400) + 1 reconcile listing + 1 companies); {goal}; "
              f"{wall:.2f} s; {dict(asked)}")  # fmt: skip
        return target is None or done.requests_used <= target

    ok &= daily("sandbox data", None)
    # The target mix: the newest `--recently-paid` paid invoices stay recent; the others get a
    # paidDate 90 days back, in the sandbox and here alike (as if paid and synced long ago).
    surplus = list(recently_paid.values_list("pk", "autotask_id")[args.recently_paid :])
    long_ago = (timezone.localdate() - timedelta(days=90)).isoformat()
    for _, autotask_id in surplus:
        sandbox.control("PATCH", f"/invoices/{autotask_id}", {"paidDate": long_ago})
    Invoice.objects.for_partner(partner).filter(pk__in=[pk for pk, _ in surplus]).update(
        paid_in_autotask_on=long_ago
    )
    ok &= daily("target mix", 20)
    sandbox.stop()
    print("\nall targets met" if ok else "\nSOME TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
