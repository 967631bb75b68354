"""A real Celery worker as a subprocess, for tests that kill it (RELIABILITY.md §6).

`Worker(env).start()` runs `celery -A config worker -Q sync,default -P prefork -c 1
--without-gossip --without-mingle --without-heartbeat -l INFO` through this module's `__main__`,
which only shortens the sync lease (`PAYSYNC_TEST_SYNC_LEASE_SECONDS`) before handing over to
Celery's own command line: with the production lease (5 minutes) a redelivered run waits 5
minutes before it may take over from its dead worker. Processes are killed by pid only (the
worker and the children listed in /proc), never by name. Every wait is bounded. Other queues
and pool sizes: `Worker(env, log, queues="webhooks,writeback,default", concurrency=2)`.
"""

from __future__ import annotations

import contextlib
import os
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


def worker_args(queues: str = "sync,default", concurrency: int = 1) -> list[str]:
    args = list(WORKER_ARGS)
    args[args.index("-Q") + 1] = queues
    args[args.index("-c") + 1] = str(concurrency)
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
        concurrency: int = 1,
    ):
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.args = worker_args(queues, concurrency)
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, *, ready_timeout: float = 60) -> Worker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sync.worker_harness", *self.args],
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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pool_children(self) -> list[int]:
        return [pid for pid in children(self.pid) if alive(pid)]

    def kill_pool_child(self) -> int:
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
        import sync.services

        sync.services.LEASE = timedelta(seconds=float(lease))
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "config", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
