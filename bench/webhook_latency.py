"""Bench: the webhook endpoint under load (PRODUCT.md "Targets", RELIABILITY WH-7).

    .venv/bin/python bench/webhook_latency.py [--rate 200] [--seconds 60] [--copies 1]
        [--threads 8] [--sample 50] [--gunicorn-workers 4] [--worker-concurrency 2]
        [--background idle|normal] [--worker-prefetch 1] [--no-worker] [--threshold 10000]

1. PostgreSQL and Redis (throwaway ones unless DATABASE_URL / REDIS_URL are set; bench/
   sync_common.py), a fresh migrated database, the Autotask sandbox in its own process with
   enough invoices re-opened (paidDate cleared through its control routes), a partner
   connected and synced, its webhook endpoint and secret.
2. `gunicorn config.wsgi:application -w 4` (2 x cores) on 127.0.0.1 and a Celery worker
   (queues webhooks, writeback, default; prefork -c 2) as subprocesses, killed by pid at
   exit. Everything shares 2 cores here, so by default (`--background idle`) the worker and
   the sandbox run under SCHED_IDLE (`chrt --idle 0`): acknowledging is the latency-critical
   path; processing is throughput work that takes whatever CPU the acknowledgements leave,
   and the sandbox stands for Autotask, which is not on our machine. (nice 10 was not
   enough: each wake-up of a gunicorn worker — accept, PostgreSQL, Redis — waited behind
   running niced processes, p99 66 ms.) In production they run in their own containers;
   `--background normal` measures all on equal terms.
3. Open-loop load: request i is due at t0 + i / rate, whatever the answers; `--threads` sender
   threads take the next due request and send it, signed beforehand, on a new raw socket. Each
   event pays one distinct invoice in full; `--copies N` delivers every event N times (same
   webhook-id: the processor's retries), shuffled. `--sample` of the events are spread evenly
   over the run and timed to Autotask.
4. Figures: acknowledgement latency p50/p95/p99/max (send → answer) and how late the sender
   was against the schedule, errors (non-2xx or connection errors), the achieved rate; the
   webhook-to-Autotask time of the sampled invoices (first delivery sent → the sandbox logs the
   PATCH with paidDate) p50/p99/max; and when the worker had drained everything (no event
   "received", no outbox row pending or sending) after the load stopped.

Targets: p99 < 50 ms at 200 requests/s; webhook → Autotask < 2 s; drained ≤ 10 s after the
load. PostgreSQL runs with fsync off, so database figures are optimistic. Everything on
127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common

ROOT = common.ROOT
SEED = 7


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


class Proc:
    """A subprocess killed (with its children) by pid at exit."""

    def __init__(self, args: list[str], env: dict, log: Path, idle: bool = False):
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            ["chrt", "--idle", "0", *args] if idle else args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in [*children(self.proc.pid), self.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                sys.exit(f"{what}: the process exited\n{tail}")
            if predicate():
                return
            time.sleep(0.1)
        sys.exit(f"{what}: not ready in {timeout:.0f} s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and of their reaped children (/proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children(current)
    return found


def postgres_pids() -> list[int]:
    """Our PostgreSQL server's processes: the postmaster started with our port, and its
    children (other servers on the machine, e.g. a test run's, are not counted)."""
    port = urlsplit(os.environ.get("DATABASE_URL", "")).port or 5432
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"postgres") and f"{port}".encode() in argv:
                return tree(int(cmdline.parent.name))
    return []


def control(sandbox, method: str, path: str, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        f"{sandbox.base}/_sandbox/databases/{common.SANDBOX_USER}{path}", data=data
    )
    req.method = method
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def reopen_invoices(sandbox, count: int) -> int:
    """Clear paidDate of the sandbox's invoices (most generated ones are old and paid)."""
    from sandbox.data import INVOICE_ID_START

    reopened, missing, invoice_id = 0, 0, INVOICE_ID_START
    while missing < 10 and reopened < count:  # ids have gaps of at most 2
        try:
            control(sandbox, "PATCH", f"/invoices/{invoice_id}", {"paidDate": None})
            reopened += 1
            missing = 0
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            missing += 1
        invoice_id += 1
    return reopened


def setup(args):
    """Database, sandbox, partner (synced), endpoint. Returns what the load needs."""
    common.start_services()
    common.migrate()
    needed = args.rate * args.seconds // args.copies + args.sample
    sandbox = common.Sandbox(
        companies=max(50, needed // 20), invoices=int(needed * 1.15) + 200, latency_ms=0
    )
    # Before connecting: the limiter reads the threshold at connect (ThresholdInformation) and
    # spends at most AUTOTASK_BUDGET_SHARE of it an hour (5,000 of Autotask's 10,000).
    control(sandbox, "PATCH", "/switches", {"threshold": args.threshold})
    budget = int(args.threshold * float(os.environ.get("AUTOTASK_BUDGET_SHARE", "0.5")))
    if 2 * (needed + 200) > budget:  # a PATCH and a read-back GET per payment
        print(
            f"==> WARNING: {2 * (needed + 200)} write-back requests > this database's budget of "
            f"{budget} an hour: write-backs past it wait for the next hour (--threshold)"
        )
    t = time.monotonic()
    reopened = reopen_invoices(sandbox, int(needed * 1.15) + 200)
    print(f"==> sandbox: {reopened} invoices re-opened in {time.monotonic() - t:.1f} s")
    common.setup_django()
    from invoices.models import Invoice
    from payments.services import payment_settings
    from sync.services.runs import execute_run

    connection = common.connect_partner("Webhook Bench MSP")
    partner = connection.partner
    t = time.monotonic()
    run = execute_run(partner=partner, run_id=connection.first_run.id)
    assert run.status == "succeeded", run.error_message
    invoices = list(
        Invoice.objects.filter(partner=partner, status="open", outstanding__gt=0)
        .order_by("id")
        .values_list("id", "autotask_id", "outstanding", "currency")
    )
    print(f"==> synced {len(invoices)} open invoices in {time.monotonic() - t:.1f} s")
    if len(invoices) < needed:
        sys.exit(f"only {len(invoices)} open invoices, {needed} needed")
    endpoint, secret = payment_settings.payment_settings_create(partner=partner)
    control(sandbox, "DELETE", "/requests")
    from django.db import connections

    connections.close_all()  # the bench process holds no connection during the load
    return sandbox, partner, endpoint.endpoint_id, secret, invoices


def start_processes(args, env: dict, tmp: Path):
    port = common.free_port()
    server = Proc(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "-w",
            str(args.gunicorn_workers),
            "-b",
            f"127.0.0.1:{port}",
        ],
        {**env, "LOG_LEVEL": "WARNING"},
        tmp / "gunicorn.log",
    )
    worker = (
        None
        if args.no_worker
        else Proc(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "webhooks,writeback,default",
                "-P",
                "prefork",
                "-c",
                str(args.worker_concurrency),
                "--prefetch-multiplier",
                str(args.worker_prefetch),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            env,
            tmp / "worker.log",
            idle=args.background == "idle",
        )
    )
    import requests

    base = f"http://127.0.0.1:{port}"

    def healthy():
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        return False

    server.wait_until(healthy, 60, "gunicorn")
    if worker is not None:
        worker.wait_until(
            lambda: " ready." in worker.log_path.read_text(errors="replace"), 60, "celery worker"
        )
    return server, worker, base


def build_events(args, invoices):
    """Events (event id, body, autotask id, sampled?), and the delivery order."""
    rng = random.Random(SEED)
    distinct = args.rate * args.seconds // args.copies
    chosen = rng.sample(invoices, distinct)
    step = max(1, distinct // args.sample)
    sampled = set(range(step // 2, distinct, step)[: args.sample])
    events = []
    for i, (pk, autotask_id, outstanding, currency) in enumerate(chosen):
        body = {
            "type": "payment.succeeded",
            "data": {
                "payment_id": f"pay_bench_{i}",
                "invoice_id": pk,
                "amount": str(outstanding),
                "currency": currency,
                "method": "card",
            },
        }
        events.append((f"msg_bench_{i}", json.dumps(body).encode(), autotask_id, i in sampled))
    # Copies of an event land anywhere later in the run; the first copy keeps its slot, so the
    # sampled events stay spread over the run.
    deliveries = list(range(distinct))
    extra = [i for i in range(distinct) for _ in range(args.copies - 1)]
    rng.shuffle(extra)
    for i in extra:
        deliveries.insert(rng.randrange(i + 1, len(deliveries) + 1), i)
    return events, deliveries


def warm_up(url: str, secret: str, count: int = 200) -> None:
    """Load code, connections and caches in every server process before measuring: events
    naming an unknown invoice (answered 202, parked)."""
    import requests

    from payments import webhooks

    def send(chunk):
        with requests.Session() as session:
            for i in chunk:
                event_id = f"msg_warmup_{i}"
                body = json.dumps(
                    {
                        "type": "payment.succeeded",
                        "data": {"payment_id": f"pay_warmup_{i}", "invoice_number": "WARM-UP",
                                 "amount": "1.00"},
                    }
                ).encode()  # fmt: skip
                ts = int(time.time())
                session.post(
                    url,
                    data=body,
                    timeout=10,
                    headers={
                        "content-type": "application/json",
                        "webhook-id": event_id,
                        "webhook-timestamp": str(ts),
                        "webhook-signature": webhooks.signature_header(secret, event_id, ts, body),
                    },
                )

    threads = [threading.Thread(target=send, args=(range(k, count, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def raw_request(url: str, event_id: str, body: bytes, secret: str, ts: int) -> bytes:
    """One signed delivery as the bytes on the wire (HTTP/1.1, Connection: close)."""
    from payments import webhooks

    parts = urlsplit(url)
    head = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"webhook-id: {event_id}",
        f"webhook-timestamp: {ts}",
        f"webhook-signature: {webhooks.signature_header(secret, event_id, ts, body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def exchange(address: tuple[str, int], payload: bytes, timeout: float) -> int:
    """Send one request on a new connection; the status code once the answer is complete."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(payload)
        answer = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    if not answer.startswith(b"HTTP/1.") or len(answer) < 12:
        raise ConnectionError("no HTTP answer")
    return int(answer[9:12])


def run_load(args, url: str, secret: str, events, deliveries):
    """Open loop: request i is due at t0 + i / rate. Every delivery is signed before the load
    (timestamp = the load's start, well inside the 5-minute tolerance) and sent as prepared
    bytes on a raw socket: the sender is the processor, not what we measure, so it should
    take as little of the 2 cores as it can (requests + signing per send used ~3x the CPU
    and its threads' GIL waits showed up as server latency)."""
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    ts = int(time.time())
    payloads = {}
    for index in set(deliveries):
        event_id, body, _, _ = events[index]
        payloads[index] = raw_request(url, event_id, body, secret, ts)
    n = len(deliveries)
    counter = itertools.count()
    lock = threading.Lock()
    acks: list[float] = []
    lags: list[float] = []
    errors: dict[str, int] = {}
    first_sent: dict[int, float] = {}
    t0 = time.monotonic() + 0.5
    deadline = t0 + args.seconds * 3 + 30  # bounded even if the server stalls

    def sender():
        while True:
            with lock:
                i = next(counter)
            if i >= n or time.monotonic() > deadline:
                return
            due = t0 + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            index = deliveries[i]
            wall = time.time()
            started = time.monotonic()
            try:
                status = exchange(address, payloads[index], timeout=10)
            except OSError as exc:
                status = type(exc).__name__
            took = time.monotonic() - started
            with lock:
                first_sent.setdefault(index, wall)
                acks.append(took)
                lags.append(max(0.0, started - due))
                if not (isinstance(status, int) and 200 <= status < 300):
                    errors[str(status)] = errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    elapsed = time.monotonic() - t0
    return acks, lags, errors, first_sent, elapsed


def wait_drained(partner, timeout: float) -> float | None:
    from payments.models import WebhookEvent, WritebackOutbox

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        busy = (
            WebhookEvent.objects.filter(partner=partner, status="received").exists()
            or WritebackOutbox.objects.filter(
                partner=partner, state__in=["pending", "sending"]
            ).exists()
        )
        if not busy:
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def autotask_times(sandbox, events, first_sent) -> tuple[list[float], int]:
    patched: dict[int, float] = {}
    for entry in control(sandbox, "GET", "/requests?entity=Invoices&method=PATCH")["requests"]:
        body = entry.get("body") or {}
        if entry.get("status") == 200 and body.get("paidDate"):
            at = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
            patched.setdefault(body["id"], at)
    times, missing = [], 0
    for index, (_, _, autotask_id, sampled) in enumerate(events):
        if not sampled:
            continue
        if autotask_id in patched and index in first_sent:
            times.append(patched[autotask_id] - first_sent[index])
        else:
            missing += 1
    return times, missing


def stages(partner, events) -> dict[str, list[float]]:
    """Where the webhook-to-Autotask time of the sampled events went: received → processed
    (the webhook task), processed → outbox row created, outbox created → first PATCH attempt
    started (the write-back task), attempt started → finished (the PATCH)."""
    from payments.models import WebhookEvent, WritebackAttempt, WritebackOutbox

    sampled = [event_id for event_id, _, _, chosen in events if chosen]
    rows = WebhookEvent.objects.filter(partner=partner, event_id__in=sampled).values(
        "received_at", "processed_at", "payment__invoice_id"
    )
    out: dict[str, list[float]] = {"processed": [], "outbox": [], "attempt": [], "patch": []}
    for row in rows:
        if row["processed_at"] is None:
            continue
        out["processed"].append((row["processed_at"] - row["received_at"]).total_seconds())
        outbox = WritebackOutbox.objects.filter(invoice_id=row["payment__invoice_id"]).first()
        if outbox is None:
            continue
        out["outbox"].append((outbox.created_at - row["processed_at"]).total_seconds())
        attempt = WritebackAttempt.objects.filter(outbox=outbox).order_by("started_at").first()
        if attempt is None or attempt.finished_at is None:
            continue
        out["attempt"].append((attempt.started_at - outbox.created_at).total_seconds())
        out["patch"].append((attempt.finished_at - attempt.started_at).total_seconds())
    return out


def cpu_usage(worker, sandbox) -> dict[str, float]:
    """CPU seconds so far of the Celery worker (all its pool processes), the sandbox and every
    PostgreSQL process on the machine: what processing a payment costs, per component."""
    return {
        "worker": cpu_seconds(tree(worker.proc.pid)) if worker else 0.0,
        "sandbox": cpu_seconds([sandbox.proc.pid]),
        "postgres": cpu_seconds(postgres_pids()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="requests per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--copies", type=int, default=1, help="deliveries of each event")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sample", type=int, default=50)
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--worker-prefetch",
        type=int,
        default=1,
        help="the worker's --prefetch-multiplier (docker-compose's payments worker: see there)",
    )
    parser.add_argument(
        "--background",
        choices=["idle", "normal"],
        default="idle",
        help="scheduling of the Celery worker and the sandbox (idle: SCHED_IDLE)",
    )
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument(
        "--threshold",
        type=int,
        default=10_000,
        help="the sandbox database's hourly request threshold (Autotask: 10,000; we spend half)."
        " One partner paying 200 invoices/s needs 400 requests/s: raise it to measure our side",
    )
    parser.add_argument(
        "--no-worker", action="store_true", help="no Celery worker: the endpoint alone"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.copies <= 0 or args.seconds > 600:
        sys.exit("rate, seconds (≤ 600) and copies must be positive")

    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="paysync-webhook-bench-"))
    sandbox, partner, endpoint_id, secret, invoices = setup(args)
    events, deliveries = build_events(args, invoices)
    server = worker = None
    try:
        server, worker, base = start_processes(args, dict(os.environ), tmp)
        if args.background == "idle":  # the sandbox (Autotask) too: all its threads, and new ones
            subprocess.run(["chrt", "--idle", "-a", "-p", "0", str(sandbox.proc.pid)], check=True)
        url = f"{base}/api/v1/payments/webhooks/{endpoint_id}/"
        print(
            f"==> {len(deliveries)} requests ({len(events)} events x {args.copies}) at "
            f"{args.rate}/s from {args.threads} threads; gunicorn -w {args.gunicorn_workers}, "
            f"celery -c {args.worker_concurrency} ({args.background}); logs in {tmp}"
        )
        warm_up(url, secret)
        if not args.no_worker:  # the warm-up's events are processed before the clock starts
            wait_drained(partner, 120)
        cpu_before = cpu_usage(worker, sandbox)
        acks, lags, errors, first_sent, elapsed = run_load(args, url, secret, events, deliveries)
        drained = None if args.no_worker else wait_drained(partner, args.drain_timeout)
        cpu = {k: v - cpu_before[k] for k, v in cpu_usage(worker, sandbox).items()}
        times, missing = autotask_times(sandbox, events, first_sent)
        split = stages(partner, events)
    finally:
        for proc in (server, worker):
            if proc is not None:
                proc.kill()
    ms = [a * 1000 for a in acks]
    print(
        f"\nrequests sent      {len(acks)} of {len(deliveries)} in {elapsed:.1f} s "
        f"({len(acks) / elapsed:.0f}/s); sender late p99 {pct(lags, 99) * 1000:.1f} ms"
    )
    print(
        f"ack latency        p50 {pct(ms, 50):.1f} ms  p95 {pct(ms, 95):.1f} ms  "
        f"p99 {pct(ms, 99):.1f} ms  max {max(ms, default=0):.1f} ms   (target p99 < 50 ms)"
    )
    print(f"errors             {sum(errors.values())} {errors or ''}")
    print(
        f"webhook→Autotask   p50 {pct(times, 50):.2f} s  p99 {pct(times, 99):.2f} s  "
        f"max {max(times, default=float('nan')):.2f} s over {len(times)} invoices"
        f"{f', {missing} never written' if missing else ''}   (target < 2 s)"
    )
    print(
        "  of which         "
        + "  ".join(
            f"{name} p50 {pct(values, 50) * 1000:.0f} / p99 {pct(values, 99) * 1000:.0f} ms"
            for name, values in split.items()
        )
    )
    if args.no_worker:
        drain = "no worker (--no-worker): nothing processed"
    elif drained is not None:
        drain = f"{drained:.1f} s after the load stopped"
    else:
        drain = f"NOT drained {args.drain_timeout:.0f} s after the load"
    print(f"drained            {drain}   (target ≤ 10 s)")
    if not args.no_worker and drained is not None and events:
        per = {k: v / len(events) * 1000 for k, v in cpu.items()}
        per_core = 1000 / per["worker"] if per["worker"] else float("inf")
        print(
            f"CPU per payment    worker {per['worker']:.1f} ms, "
            f"PostgreSQL {per['postgres']:.1f} ms, "
            f"sandbox (stands for Autotask) {per['sandbox']:.1f} ms"
        )
        print(
            f"capacity           {per_core:.0f} payments/s per worker core; "
            f"{args.rate}/s needs {math.ceil(args.rate / per_core)} worker cores "
            f"(+ {per['postgres'] * args.rate / 1000:.1f} PostgreSQL cores)"
        )


if __name__ == "__main__":
    main()
