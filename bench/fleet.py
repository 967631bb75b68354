"""Bench: one hourly round of a fleet on one sync worker (issue 19).

    .venv/bin/python bench/fleet.py [--partners 1000] [--latency-ms 300] [--threads 50]
        [--tick-sizes 100,1000,10000] [--timeout 300] [--skip-round]

1. The round: N partners, each connected to its own Autotask database in one sandbox process
   (its own credentials, zone and thread limit; `--latency-ms` on every request), with nothing
   new since their cursors. One `sync.tick` (only the hourly kind: the daily runs are another
   bench) creates their "new data" runs and enqueues them; one real Celery worker
   (`-Q sync -P threads -c THREADS`, as in docker-compose.yml) runs them. Prints the wall time
   from the tick to the last run finished, the requests per partner (the runs' own and all
   the sandbox saw, zone lookups and ThresholdInformation included), the highest number of
   requests in flight at once on any one partner's database (from the sandbox's request log:
   each entry's end and duration), and the sandbox's thread-limit refusals.
2. The tick at 100, 1,000 and 10,000 connected partners (rows in PostgreSQL only, no
   sandbox): the time and the number of queries of the first tick (every partner due) and of
   the next one (nothing due), and the enqueue time of the first.

Uses DATABASE_URL / REDIS_URL when set, else throwaway servers (bench/sync_common.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common

INTEGRATION_CODE = common.INTEGRATION_CODE
OVERHEAD = {"zoneInformation", "ThresholdInformation"}


def start_sandbox(databases: list[dict]) -> tuple[subprocess.Popen, str]:
    port = common.free_port()
    config = Path(tempfile.mkdtemp(prefix="paysync-fleet-")) / "sandbox.json"
    config.write_text(json.dumps({"port": port, "databases": databases}))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "autotask_sandbox", "--config", str(config)],
        cwd=common.ROOT,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    common._wait(lambda: common._connectable(port), 600, "sandbox")
    return proc, base


def control(base: str, path: str):
    with urllib.request.urlopen(f"{base}/_sandbox/{path}", timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def max_in_flight(entries: list[dict]) -> int:
    """The most requests in flight at once, from each entry's end time and duration."""
    events = []
    for e in entries:
        end = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        start = end - e["duration_ms"] / 1000
        events += [(start, 1), (end, -1)]
    events.sort(key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same instant
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def connect_fleet(specs: list[dict], *, at) -> list[int]:
    """Partners connected (rows only: the Connect form's checks would cost 3 requests each),
    with cursors at `at`: nothing new since."""
    from integrations.models import AutotaskConnection
    from partners.models import Partner
    from sync.models import SyncState

    partners = Partner.objects.bulk_create(
        [
            Partner(name=f"Fleet {i:05d}", slug=f"fleet-{i:05d}-{secrets.token_hex(3)}")
            for i in range(len(specs))
        ]
    )
    AutotaskConnection.objects.bulk_create(
        [
            AutotaskConnection(
                partner=p,
                account_email="ops@example.test",
                username=spec["username"],
                secret=spec["secret"],
                username_last4=spec["username"][-4:],
                connected_at=at - timedelta(days=2),
            )
            for p, spec in zip(partners, specs, strict=True)
        ]
    )
    SyncState.objects.bulk_create(
        [
            SyncState(partner=p, invoices_created_cursor=at, companies_changed_cursor=at)
            for p in partners
        ]
    )
    return [p.id for p in partners]


WORKER_MAIN = (
    "import sys, django; django.setup(); import sync.prefetch as p; "
    "p.Prefetched.SWITCH_INTERVAL = float(sys.argv.pop(1)); "
    "from celery.bin.celery import main; sys.argv[0] = 'celery'; main()"
)


def start_worker(threads: int, log: Path, switch_interval: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER_MAIN,
            str(switch_interval),
            "-A",
            "config",
            "worker",
            "-Q",
            "sync",
            "-P",
            "threads",
            "-c",
            str(threads),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        cwd=common.ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hourly_round(args) -> None:
    from django.utils import timezone

    from config.celery import app
    from sync import dispatch
    from sync.models import SyncRun

    specs = [
        {
            "username": f"fleet-{i:05d}@sandbox.test",
            "secret": f"fleet-secret-{secrets.token_hex(6)}",
            "integration_code": INTEGRATION_CODE,
            "companies": 2,
            "invoices": 3,
            "latency_ms": args.latency_ms,
            "seed": i + 1,
        }
        for i in range(args.partners)
    ]
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        limit = int(cursor.fetchone()[0])
    if args.threads > limit - 10:
        # Measured: -c 100 on PostgreSQL's default 100 fails runs with "too many clients".
        sys.exit(f"--threads {args.threads} needs more than max_connections={limit}")
    t = time.monotonic()
    sandbox, base = start_sandbox(specs)
    print(f"sandbox: {args.partners} databases up in {time.monotonic() - t:.1f} s")
    os.environ["AUTOTASK_ZONE_LOOKUP_URL"] = f"{base}/atservicesrest/v1.0/zoneInformation"
    from django.conf import settings

    settings.AUTOTASK_ZONE_LOOKUP_URL = os.environ["AUTOTASK_ZONE_LOOKUP_URL"]
    try:
        now = timezone.now()
        partner_ids = connect_fleet(specs, at=now)
        app.control.purge()
        log = Path(tempfile.mkdtemp(prefix="paysync-fleet-")) / "worker.log"
        worker = start_worker(args.threads, log, args.switch_interval)
        try:
            time.sleep(3)  # the worker's start (imports, broker connection)
            if worker.poll() is not None:
                sys.exit(f"worker exited:\n{log.read_text()[-3000:]}")
            cpu_before = cpu_seconds(worker.pid)
            dispatch.PERIODS = {SyncRun.Kind.NEW_DATA: timedelta(hours=1)}  # hourly only
            started = time.monotonic()
            created = dispatch.dispatch_due_runs()
            assert len(created) == args.partners, len(created)
            deadline = started + args.timeout
            active = SyncRun.objects.filter(status__in=SyncRun.ACTIVE)
            while active.exists():
                if time.monotonic() > deadline:
                    print(f"TIMEOUT: {active.count()} runs not finished after {args.timeout} s")
                    break
                time.sleep(0.2)
            wall = time.monotonic() - started
            cpu = cpu_seconds(worker.pid) - cpu_before
        finally:
            worker.kill()
            worker.wait(10)
        runs = SyncRun.objects.filter(partner_id__in=partner_ids)
        statuses = Counter(runs.values_list("status", flat=True))
        used = list(runs.values_list("requests_used", flat=True))
        per_db, data, peaks, refusals, entities = [], [], [], 0, Counter()
        for spec in specs:
            entries = control(base, f"databases/{spec['username']}/requests")["requests"]
            per_db.append(len(entries))
            data.append(sum(1 for e in entries if e["entity"] not in OVERHEAD))
            peaks.append(max_in_flight(entries))
            refusals += sum(1 for e in entries if e["status"] in (429, 500))
            entities.update(e["entity"] for e in entries)
        print(
            f"\nhourly round: {args.partners} partners, {args.latency_ms} ms per request, one "
            f"worker -P threads -c {args.threads}, switch interval {args.switch_interval * 1000} ms"
        )
        print(f"  wall time, tick to last run finished: {wall:.1f} s (target <= 60 s)")
        print(f"  runs: {dict(statuses)}; worker CPU {cpu:.1f} s ({cpu / wall:.0%} of one core)")
        print(
            f"  requests per partner: data (the sync's reads) max {max(data)} (target <= 3); "
            f"all the sandbox saw max {max(per_db)} (mean {sum(per_db) / len(per_db):.2f}), the "
            f"run's count max {max(used)}: + ThresholdInformation (the limiter caches it 10 "
            f"min: once an hourly run) and the zone lookup (once a process; cached a day)"
        )
        print(f"  requests by entity: {dict(entities)}")
        print(
            f"  max in flight on one partner's database: {max(peaks)} (target <= 3); "
            f"thread-limit or other 429/500 answers: {refusals}"
        )
        bound = args.partners * 3 * args.latency_ms / 1000
        print(
            f"  arithmetic: {bound:.0f} s of waiting; prefork -c 4 needs >= {bound / 4:.0f} s, "
            f"{args.threads} threads >= {bound / args.threads:.0f} s"
        )
    finally:
        sandbox.kill()
        sandbox.wait(10)


def tick_scale(sizes: list[int]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from integrations.models import AutotaskConnection
    from partners.models import Partner
    from sync import dispatch
    from sync.models import SyncRun, SyncState

    dispatch.PERIODS = {
        SyncRun.Kind.NEW_DATA: timedelta(hours=1),
        SyncRun.Kind.UNPAID: timedelta(days=1),
    }
    enqueued: list = []
    real_enqueue = dispatch.enqueue_runs
    dispatch.enqueue_runs = enqueued.extend  # timed apart below
    print("\ntick (sync.dispatch.dispatch_due_runs), every partner due, then nothing due:")
    for size in sizes:
        SyncRun.objects.all().delete()
        SyncState.objects.all().delete()
        AutotaskConnection.objects.all().delete()
        Partner.objects.all().delete()
        connect_fleet(
            [{"username": f"u{i}@x.test", "secret": "s"} for i in range(size)],
            at=timezone.now(),
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        figures = []
        for _ in range(2):
            enqueued.clear()
            with CaptureQueriesContext(connection) as ctx:
                t = time.perf_counter()
                created = dispatch.dispatch_due_runs()
                elapsed = time.perf_counter() - t
            figures.append((elapsed, len(ctx.captured_queries), len(created)))
        t = time.perf_counter()
        from config.celery import app

        first_created = SyncRun.objects.values_list("partner_id", "id")
        real_enqueue([dispatch.Dispatched(*row) for row in first_created])
        enqueue_time = time.perf_counter() - t
        app.control.purge()
        (t1, q1, c1), (t2, q2, c2) = figures
        print(
            f"  {size:>6} partners: first {t1 * 1000:7.1f} ms, {q1} queries, {c1} runs created; "
            f"next {t2 * 1000:6.1f} ms, {q2} queries, {c2} created; enqueue of the "
            f"{len(first_created)} runs {enqueue_time * 1000:.0f} ms"
        )
    dispatch.enqueue_runs = real_enqueue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=1_000)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--tick-sizes", default="100,1000,10000")
    parser.add_argument("--skip-round", action="store_true")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0005,
        help="the worker's sync switch interval (sync/prefetch.py Prefetched.SWITCH_INTERVAL)",
    )
    args = parser.parse_args()

    common.start_services()
    common.migrate()
    common.setup_django()
    if not args.skip_round:
        hourly_round(args)
    sizes = [int(s) for s in args.tick_sizes.split(",") if s]
    if sizes:
        tick_scale(sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
