"""Bench: the initial sync (PRODUCT.md "Targets").

    .venv/bin/python bench/sync_initial.py [--invoices 20000] [--companies 2000]
        [--latency-ms 100] [--rss-invoices 100000] [--skip-rss] [--timeline]

1. Initial sync of 20,000 invoices and 2,000 companies from the sandbox at 100 ms a request:
   requests used vs the minimum (ceil(invoices/500) + ceil(companies/500) pages + zone lookup +
   payment terms; ThresholdInformation is read at connect), wall time vs requests x latency / 3
   (Autotask's 3 requests in flight per endpoint: the usable concurrency, issue 19), and the
   time spent writing (upsert + commit).
2. The same with latency 0: DB write throughput (invoices/s in the upsert, and end to end).
   `--timeline`: each request (entity, reader thread) and each write of the writer thread,
   in seconds from the run's start: which of them the wall time waited for.
3. Peak RSS of the syncing process at 100,000 invoices (ru_maxrss of a subprocess that only
   syncs; the sandbox is another process).

Targets: requests ≤ 1.1 x minimum; wall ≤ 1.3 x requests x latency / 3; writes ≥ 5,000 invoices/s;
peak RSS < 300 MB at 100,000. PostgreSQL runs with fsync off (like the test suite), so write
figures are optimistic. Uses DATABASE_URL / REDIS_URL when set, else throwaway servers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common

CONCURRENCY = 3  # Autotask's requests in flight per endpoint per database (API.md §4, §8.4)


def child(args) -> None:
    """Runs in a subprocess: connect a partner, run the initial sync, print JSON figures."""
    common.setup_django()
    from integrations.autotask.client import AutotaskClient
    from sync.engine import SyncEngine
    from sync.models import SyncRun
    from sync.services.runs import execute_run

    timers = {"apply_invoices": 0.0, "apply_customers": 0.0, "commit": 0.0, "parse": 0.0}
    spans = []  # (what, start, end): requests by entity and the writer's work (--timeline)

    def timed(name, fn):
        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                ended = time.perf_counter()
                timers[name] += ended - started
                spans.append((name, started, ended))

        return wrapper

    def attempt(fn):
        def wrapper(self, method, url, *, entity, **k):
            started = time.perf_counter()
            try:
                return fn(self, method, url, entity=entity, **k)
            finally:
                reader = threading.current_thread().name
                spans.append((f"{entity} ({reader})", started, time.perf_counter()))

        return wrapper

    AutotaskClient._attempt = attempt(AutotaskClient._attempt)

    SyncEngine._apply_invoices = timed("apply_invoices", SyncEngine._apply_invoices)
    SyncEngine._apply_customers = timed("apply_customers", SyncEngine._apply_customers)
    SyncEngine._commit_page = timed("commit", SyncEngine._commit_page)
    SyncEngine._parse_records = timed("parse", SyncEngine._parse_records)
    clients = common.capture_clients()
    conn = common.connect_partner(args.partner)
    sandbox_log_before = int(args.log_before or 0)
    rss_before = common.peak_rss_mb()
    cpu_before = time.process_time()
    started = time.perf_counter()
    spans.clear()
    run = execute_run(partner=conn.partner, run_id=conn.first_run.id)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    stats = clients[0].stats.as_dict()
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "requests_used": run.requests_used,
                "created": run.created,
                "invoices": run.created - int(args.companies),
                "http_seconds": stats["total_seconds"],
                "by_entity": stats["by_entity"],
                "timers": timers,
                "rss_mb": common.peak_rss_mb(),
                "rss_before_sync_mb": rss_before,
                "log_before": sandbox_log_before,
                "spans": [(what, a - started, b - started) for what, a, b in spans],
            }
        )
    )


def run_child(name: str, companies: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--partner", name, "--companies", str(companies)],
        env=os.environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"sync subprocess failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_timeline(spans: list) -> None:
    """Each request (by entity) and each write of the writer thread, from the run's start."""
    print("timeline (s from the run's start):")
    for what, start, end in sorted(spans, key=lambda s: s[1]):
        print(f"  {start:6.3f} - {end:6.3f}  {end - start:6.3f}  {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--companies", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--rss-invoices", type=int, default=100_000)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument(
        "--timeline", action="store_true", help="print the first run's requests and writes"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--partner", default="Bench MSP", help=argparse.SUPPRESS)
    parser.add_argument("--log-before", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    common.start_services()
    common.migrate()
    ok = True

    # 1. With latency.
    print(f"\n== initial sync: {args.invoices} invoices, {args.companies} companies, "
          f"{args.latency_ms} ms latency ==")  # fmt: skip
    sandbox = common.Sandbox(
        companies=args.companies, invoices=args.invoices, latency_ms=args.latency_ms
    )
    r = run_child("Bench latency", args.companies)
    sandbox_requests = sandbox.requests()
    sync_requests = r["requests_used"]
    pages = math.ceil(args.invoices / 500) + math.ceil(args.companies / 500)
    minimum = pages + 1 + 1  # + zone lookup + payment terms
    print(f"invoices written:   {r['invoices']} (companies {args.companies})")
    print(f"requests used:      {sync_requests} {r['by_entity']} "
          f"(sandbox log incl. connect check: {len(sandbox_requests)})")  # fmt: skip
    print(f"minimum:            {minimum} (= {pages} pages + zone lookup + payment terms; "
          f"ThresholdInformation was read at connect) -> ratio {sync_requests / minimum:.3f} "
          f"(target <= 1.1)")  # fmt: skip
    ok &= sync_requests <= 1.1 * minimum
    bound = max(sync_requests * args.latency_ms / 1000 / CONCURRENCY, 1e-9)
    print(f"wall time:          {r['wall']:.2f} s; requests x latency / {CONCURRENCY} = "
          f"{bound:.2f} s -> ratio {r['wall'] / bound:.2f} (target <= 1.3)")  # fmt: skip
    ok &= r["wall"] <= 1.3 * bound
    floor = minimum * args.latency_ms / 1000 / CONCURRENCY
    vs_floor = r["wall"] / floor
    print(f"                    (against the minimum's {minimum} requests, {floor:.2f} s: "
          f"ratio {vs_floor:.2f}; counts and partial pages count as requests)")  # fmt: skip
    t = r["timers"]
    write_s = t["apply_invoices"]
    print(f"HTTP time:          {r['http_seconds']:.2f} s summed over the readers; "
          f"sync process CPU {r['cpu']:.2f} s (the bound is {bound:.2f} s)")  # fmt: skip
    rate = r["invoices"] / write_s
    print(f"upsert invoices:    {write_s:.2f} s -> {rate:,.0f} invoices/s "
          f"(customers {t['apply_customers']:.2f} s, commits {t['commit']:.2f} s)")  # fmt: skip
    busy = t["parse"] + write_s + t["apply_customers"] + t["commit"]
    print(f"writer thread:      upsert invoices {write_s:.2f} s + customers "
          f"{t['apply_customers']:.2f} s + commits {t['commit']:.2f} s + counting records "
          f"{t['parse']:.2f} s (parsed on the readers' preparer thread) = {busy:.2f} s; "
          f"the rest of the wall time ({r['wall'] - busy:.2f} s) it waited for pages "
          f"(the first invoice page waits for the last company page; --timeline shows "
          f"when)")  # fmt: skip
    if args.timeline:
        print_timeline(r["spans"])
    sandbox.stop()

    # 2. Without latency: how fast the database side goes.
    print(f"\n== initial sync, latency 0: {args.invoices} invoices ==")
    sandbox = common.Sandbox(companies=args.companies, invoices=args.invoices, latency_ms=0)
    r0 = run_child("Bench no latency", args.companies)
    write_s = r0["timers"]["apply_invoices"]
    upsert_rate = r0["invoices"] / write_s
    print(f"wall time:          {r0['wall']:.2f} s -> {r0['invoices'] / r0['wall']:,.0f} "
          f"invoices/s end to end (HTTP {r0['http_seconds']:.2f} s; "
          f"sync process CPU {r0['cpu']:.2f} s)")  # fmt: skip
    print(f"upsert invoices:    {write_s:.2f} s -> {upsert_rate:,.0f} invoices/s "
          f"(target >= 5,000; page commits {r0['timers']['commit']:.2f} s)")  # fmt: skip
    ok &= upsert_rate >= 5_000
    sandbox.stop()

    # 3. Peak RSS at 100,000 invoices.
    if not args.skip_rss:
        print(f"\n== peak RSS: {args.rss_invoices} invoices, latency 0 ==")
        sandbox = common.Sandbox(companies=args.companies, invoices=args.rss_invoices, latency_ms=0)
        rr = run_child("Bench RSS", args.companies)
        print(f"invoices written:   {rr['invoices']} in {rr['wall']:.1f} s "
              f"({rr['invoices'] / rr['wall']:,.0f}/s end to end)")  # fmt: skip
        print(f"peak RSS:           {rr['rss_mb']:.0f} MB (after Django setup and connect: "
              f"{rr['rss_before_sync_mb']:.0f} MB) (target < 300 MB)")  # fmt: skip
        ok &= rr["rss_mb"] < 300
        sandbox.stop()

    print("\nall targets met" if ok else "\nSOME TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
