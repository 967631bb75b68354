"""Bench: hourly rounds of a fleet on one or more sync workers (issue 19).

    .venv/bin/python bench/fleet.py [--partners 1000] [--latency-ms 300] [--threads 50]
        [--workers 1] [--tick-sizes 100,1000,10000] [--timeout 300] [--skip-round]

1. Two hourly rounds: N partners, each connected to its own Autotask database in one sandbox
   process (its own credentials, zone and thread limit; `--latency-ms` on every request), with
   nothing new since their cursors. For each round one `sync.tick` (only the hourly kind: the
   daily runs are another bench) creates their "new data" runs of the slot and enqueues them;
   `--workers` real Celery workers (`-Q sync -P threads -c THREADS -n fleetI@host` each, as
   separate hosts would run them: own pools, own hostnames, one Redis, one PostgreSQL) run
   them. The first round is the previous hour's: the partners are connected as rows only
   (the Connect form's checks would fill the caches the same way), so it pays the zone lookup
   and ThresholdInformation. Its workers are then stopped; the second round, the next hour's
   slot, runs on new worker processes, so only what production shares in Redis carries over
   (no process cache). Between the two the bench prints how long Redis still holds the zones
   and thresholds the first round left: more than an hour means the real next round, an hour
   later, finds them as this one does. Per round: the wall time from the tick to the last run
   finished, each worker's runs (from its log: "sync run N finished") and CPU, the requests
   per partner (all the sandbox saw, zone lookups and ThresholdInformation included), the
   highest number of requests in flight at once on any one partner's database (from the
   sandbox's request log: each entry's end and duration), and the sandbox's thread-limit
   refusals.
2. The tick at 100, 1,000 and 10,000 connected partners (rows in PostgreSQL only, no
   sandbox): the time and the number of queries of the first tick (every partner due) and of
   the next one (nothing due), and the enqueue time of the first.

Uses DATABASE_URL / REDIS_URL when set, else throwaway servers (bench/sync_common.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def start_worker(
    threads: int, log: Path, switch_interval: float, hostname: str
) -> subprocess.Popen:
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
            "-n",
            hostname,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",  # "ready." and each run's "sync run N finished": a few lines a run
        ],
        cwd=common.ROOT,
        env={**os.environ, "LOG_LEVEL": "INFO"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FINISHED = re.compile(rb"sync run (\d+) finished")


def run_round(args, *, label: str, at, partner_ids: list[int]) -> dict:
    """One hourly slot (`at`) run by `args.workers` new worker processes; stops them after."""
    from config.celery import app
    from sync import dispatch
    from sync.models import SyncRun

    app.control.purge()
    log_dir = Path(tempfile.mkdtemp(prefix="paysync-fleet-"))
    workers = []
    try:
        for i in range(args.workers):
            log = log_dir / f"worker{i + 1}.log"
            name = f"fleet{i + 1}@bench-host-{i + 1}"
            workers.append((name, log, start_worker(args.threads, log, args.switch_interval, name)))
        deadline = time.monotonic() + 60
        for name, log, proc in workers:  # bounded wait for each worker's "ready."
            while b" ready." not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"worker {name} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        cpu_before = [cpu_seconds(proc.pid) for _, _, proc in workers]
        started_at = time.time()
        started = time.monotonic()
        created = dispatch.dispatch_due_runs(now=at)
        assert len(created) == len(partner_ids), len(created)
        run_ids = [run.id for run in created]
        timeout_at = started + args.timeout
        active = SyncRun.objects.filter(id__in=run_ids, status__in=SyncRun.ACTIVE)
        while active.exists():
            if time.monotonic() > timeout_at:
                print(f"TIMEOUT: {active.count()} runs not finished after {args.timeout} s")
                break
            time.sleep(0.2)
        wall = time.monotonic() - started
        cpu = [
            cpu_seconds(proc.pid) - c for (_, _, proc), c in zip(workers, cpu_before, strict=True)
        ]
    finally:
        for _, _, proc in workers:
            proc.kill()
            proc.wait(10)
    finished: dict[str, list[int]] = {}
    for name, log, _ in workers:
        finished[name] = [int(m) for m in FINISHED.findall(log.read_bytes())]
    runs = SyncRun.objects.filter(id__in=run_ids)
    return {
        "label": label,
        "wall": wall,
        "cpu": cpu,
        "started_at": started_at,
        "statuses": Counter(runs.values_list("status", flat=True)),
        "used": list(runs.values_list("requests_used", flat=True)),
        "run_ids": set(run_ids),
        "finished": finished,
    }


def cache_lifetimes(specs: list[dict]) -> str:
    """What the previous round left in Redis for the next one (read, not written)."""
    from django.conf import settings

    from integrations.autotask.limits import RedisLimiter, database_key
    from integrations.autotask.zones import default_zone_cache

    limiter = RedisLimiter.from_settings()
    url = settings.AUTOTASK_ZONE_LOOKUP_URL
    zones = {spec["username"]: default_zone_cache.get(url, spec["username"]) for spec in specs}
    pipe = limiter.redis.pipeline(transaction=False)
    for spec in specs:
        pipe.ttl(default_zone_cache._redis_key(url, spec["username"]))
        zone = zones[spec["username"]]
        db_key = database_key(ci=zone.ci if zone else None, username=spec["username"])
        pipe.ttl(limiter._limit_key(db_key))
        pipe.get(limiter._read_key(db_key))
    answers = pipe.execute()
    zone_ttls = [t for t in answers[0::3] if t > 0]
    limit_ttls = [t for t in answers[1::3] if t > 0]
    reads = [float(r) for r in answers[2::3] if r]
    now = time.time()
    due = [limiter.threshold_ttl - (now - r) for r in reads]
    hour = 3600
    return (
        f"\ncaches the previous round left in Redis: zones of {len(zone_ttls)}/{len(specs)} users "
        f"(expire in >= {min(zone_ttls, default=0) / hour:.1f} h); thresholds of "
        f"{len(reads)}/{len(specs)} databases (re-read due in >= {min(due, default=0) / hour:.1f}"
        f" h, keys expire in >= {min(limit_ttls, default=0) / hour:.1f} h): "
        + (
            "an hour later the next round finds them all"
            if len(zone_ttls) == len(reads) == len(specs)
            and min(due) > hour
            and min(zone_ttls) > hour
            else "NOT all there an hour later"
        )
    )


def report_round(args, result: dict, specs: list[dict], entries: dict[str, list[dict]]) -> None:
    per_db, data, peaks, refusals, entities = [], [], [], 0, Counter()
    for spec in specs:
        mine = entries[spec["username"]]
        per_db.append(len(mine))
        data.append(sum(1 for e in mine if e["entity"] not in OVERHEAD))
        peaks.append(max_in_flight(mine))
        refusals += sum(1 for e in mine if e["status"] in (429, 500))
        entities.update(e["entity"] for e in mine)
    wall, cpu = result["wall"], result["cpu"]
    print(
        f"\n{result['label']}: {args.partners} partners, {args.latency_ms} ms per request, "
        f"{args.workers} worker(s) -P threads -c {args.threads}, switch interval "
        f"{args.switch_interval * 1000} ms"
    )
    print(f"  wall time, tick to last run finished: {wall:.1f} s (target <= 60 s)")
    print(f"  runs: {dict(result['statuses'])}")
    seen = Counter()
    for (name, ran), used in zip(result["finished"].items(), cpu, strict=True):
        mine = [r for r in ran if r in result["run_ids"]]
        seen.update(mine)
        print(
            f"  {name}: {len(mine)} runs ({len(mine) / len(result['run_ids']):.0%}), "
            f"CPU {used:.1f} s ({used / wall:.0%} of one core)"
        )
    twice = sum(1 for n in seen.values() if n > 1)
    print(
        f"  runs finished by no worker's log: {len(result['run_ids'] - set(seen))}; twice: {twice}"
    )
    print(
        f"  requests per partner, all the sandbox saw: max {max(per_db)}, mean "
        f"{sum(per_db) / len(per_db):.2f} (target <= 3); data (the sync's reads) max "
        f"{max(data)}; the run's own count max {max(result['used'])}"
    )
    print(f"  requests by entity: {dict(sorted(entities.items()))}")
    print(
        f"  max in flight on one partner's database: {max(peaks)} (target <= 3); "
        f"thread-limit or other 429/500 answers: {refusals}"
    )
    threads = args.threads * args.workers
    bound = args.partners * 3 * args.latency_ms / 1000
    print(
        f"  arithmetic: {bound:.0f} s of waiting; prefork -c 4 needs >= {bound / 4:.0f} s, "
        f"{threads} threads >= {bound / threads:.0f} s"
    )


def hourly_round(args) -> None:
    from django.db import connection
    from django.utils import timezone

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
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        limit = int(cursor.fetchone()[0])
    if args.threads * args.workers > limit - 10:
        # Measured: -c 100 on PostgreSQL's default 100 fails runs with "too many clients".
        sys.exit(f"{args.workers} x -c {args.threads} needs more than max_connections={limit}")
    t = time.monotonic()
    sandbox, base = start_sandbox(specs)
    print(f"sandbox: {args.partners} databases up in {time.monotonic() - t:.1f} s")
    os.environ["AUTOTASK_ZONE_LOOKUP_URL"] = f"{base}/atservicesrest/v1.0/zoneInformation"
    from django.conf import settings

    settings.AUTOTASK_ZONE_LOOKUP_URL = os.environ["AUTOTASK_ZONE_LOOKUP_URL"]
    try:
        now = timezone.now()
        partner_ids = connect_fleet(specs, at=now)
        dispatch.PERIODS = {SyncRun.Kind.NEW_DATA: timedelta(hours=1)}  # hourly only
        first = run_round(
            args, label="previous round (cold caches)", at=now, partner_ids=partner_ids
        )
        lifetimes = cache_lifetimes(specs)
        steady = run_round(
            args,
            label="hourly round, steady state (next slot, new worker processes)",
            at=now + timedelta(hours=1),
            partner_ids=partner_ids,
        )
        split = steady["started_at"]
        before: dict[str, list[dict]] = {}
        after: dict[str, list[dict]] = {}
        for spec in specs:
            entries = control(base, f"databases/{spec['username']}/requests")["requests"]
            before[spec["username"]] = [e for e in entries if _end(e) < split]
            after[spec["username"]] = [e for e in entries if _end(e) >= split]
        report_round(args, first, specs, before)
        print(lifetimes)
        report_round(args, steady, specs, after)
    finally:
        sandbox.kill()
        sandbox.wait(10)


def _end(entry: dict) -> float:
    return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()


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
    parser.add_argument("--threads", type=int, default=50, help="threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (hosts)")
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
