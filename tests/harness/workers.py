"""A real Celery worker as a subprocess, for tests that kill it (RELIABILITY.md §6).

`Worker(env).start()` runs `celery -A config worker -Q sync,default -P threads -c 8
--without-gossip --without-mingle --without-heartbeat -l INFO` through this module's `__main__`,
which only shortens the sync lease (`PAYSYNC_TEST_SYNC_LEASE_SECONDS`, see
`worker_environment`) before handing over to Celery's own command line: a redelivered run may
take over from its dead worker only once the dead owner's lease is stale (production: 30 s
after its last heartbeat; sync/services/leases.py). Processes are killed by pid only (the
worker and the children listed in /proc), never by name. Every wait is bounded. Other queues
and pool sizes: `Worker(env, log, queues="webhooks,writeback,default", concurrency=2)`.

Pools as in production (README "Architecture", issue 19): a worker of the sync queue (queues
within sync,default) runs the threads pool (`SYNC_THREADS` threads unless `concurrency` says
otherwise), any other the prefork pool. With threads the pool is the worker process itself:
`pool_children()` is [the worker's pid] and losing "the pool child" loses the whole worker.
Tests of the prefork child's loss (task_reject_on_worker_lost: redelivered at once, the worker
survives) ask for `pool="prefork"`. `hostname="w1@host-a"` passes `-n`, as separate hosts
would have their own (tests/sync/test_scale_out.py); `finished_runs()` reads which runs this
worker finished from its log (sync/tasks.py logs "sync run N finished" at INFO).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER_ARGS = [
    "worker",
    "-Q",
    "sync,default",
    "-P",
    "prefork",
    "-c",
    "1",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "-l",
    "INFO",
]


SYNC_QUEUES = {"sync", "default"}
SYNC_THREADS = 8  # production: 50 (docker-compose.yml); 8 keep a test's connections few


def default_pool(queues: str) -> str:
    return "threads" if set(queues.split(",")) <= SYNC_QUEUES else "prefork"


def worker_args(
    queues: str = "sync,default",
    concurrency: int | None = None,
    pool: str | None = None,
    hostname: str | None = None,
) -> list[str]:
    pool = pool or default_pool(queues)
    if concurrency is None:
        concurrency = SYNC_THREADS if pool == "threads" else 1
    args = list(WORKER_ARGS)
    args[args.index("-Q") + 1] = queues
    args[args.index("-P") + 1] = pool
    args[args.index("-c") + 1] = str(concurrency)
    if hostname is not None:
        args += ["-n", hostname]
    return args


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc; psutil is not installed)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return sorted(set(found))


def socket_owner(local_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the TCP socket whose local port is `local_port`, i.e. the process
    on the client side of a loopback connection (the port a server sees as the peer's).
    /proc/net/tcp{,6} map the port to a socket inode, /proc/<pid>/fd the inode to a process."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port and fields[9] != "0":
                inodes.add(fields[9])
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


def worker_environment(server, *, lease_seconds: float | None = None) -> dict[str, str]:
    """The environment of a worker (or gunicorn) subprocess: this test's database, Redis,
    sandbox and keys, and a sync lease of `lease_seconds` when given (production:
    sync.services.leases.LEASE)."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "AUTOTASK_ZONE_LOOKUP_URL": server.zone_lookup_url,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "PYTHONUNBUFFERED": "1",
    }
    if lease_seconds is not None:
        env["PAYSYNC_TEST_SYNC_LEASE_SECONDS"] = str(lease_seconds)
    return env


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def wait_for(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout:.0f} s")


class Worker:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        queues: str = "sync,default",
        concurrency: int | None = None,
        pool: str | None = None,
        hostname: str | None = None,
    ):
        self.env = env
        self.log_path = log_path
        self.hostname = hostname
        self.args = worker_args(queues, concurrency, pool, hostname)
        self.pool = self.args[self.args.index("-P") + 1]
        self.concurrency = int(self.args[self.args.index("-c") + 1])
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, *, ready_timeout: float = 60) -> Worker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.workers", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: " ready." in self.log(since_start=True) or self.proc.poll() is not None,
            timeout=ready_timeout,
            what="worker ready",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited at start:\n{self.log()[-4000:]}")
        return self

    def log(self, *, since_start: bool = False) -> str:
        data = self.log_path.read_bytes()
        if since_start:
            data = data[self.log_offset :]
        return data.decode(errors="replace")

    def finished_runs(self) -> list[int]:
        """Ids of the sync runs this worker finished, in order (from its whole log)."""
        return [int(m) for m in re.findall(r"sync run (\d+) finished", self.log())]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pool_children(self) -> list[int]:
        if self.pool == "threads":  # the threads run in the worker process itself
            return [self.pid] if self.proc is not None and self.proc.poll() is None else []
        return [pid for pid in children(self.pid) if alive(pid)]

    def kill_pool_child(self) -> int:
        assert self.pool == "prefork", "a threads pool has no child: kill() the worker"
        kids = wait_for(self.pool_children, timeout=10, what="a pool child")
        assert len(kids) == self.concurrency, kids
        os.kill(kids[0], signal.SIGKILL)
        return kids[0]

    def kill(self) -> None:
        """SIGKILL the worker and its children (by pid), and reap it."""
        if self.proc is None:
            return
        pids = [*children(self.pid), self.pid] if self.proc.poll() is None else children(self.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for pid in pids:  # orphaned children are reparented to init; wait until gone
            wait_for(lambda pid=pid: not alive(pid), timeout=10, what=f"pid {pid} gone")
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    stop = kill


def main() -> None:  # pragma: no cover - runs in the worker subprocess
    from datetime import timedelta

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    lease = os.environ.get("PAYSYNC_TEST_SYNC_LEASE_SECONDS")
    if lease:
        import sync.services.leases

        sync.services.leases.LEASE = timedelta(seconds=float(lease))
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "config", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
