"""`gunicorn config.wsgi:application -w N` on a free 127.0.0.1 port, for tests that need the
production web server (the webhook storm, the reconciliation chaos test). Killed by pid only;
every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.harness.workers import ROOT, alive, children, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """`launch()` starts it, `wait_ready()` waits for /healthz (separate, so other processes
    can boot meanwhile); `start()` does both and waits for every worker process."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2):
        self.env, self.log_path, self.workers = env, log_path, workers
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Gunicorn:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "-w",
                str(self.workers),
                "-b",
                f"127.0.0.1:{self.port}",
                "--graceful-timeout",
                "5",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 60) -> Gunicorn:
        def ready():
            if self.proc.poll() is not None:
                return True
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
            return False

        wait_for(ready, timeout=timeout, interval=0.1, what="gunicorn ready")
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited at start:\n{self.log_path.read_text()[-4000:]}")
        return self

    def start(self) -> Gunicorn:
        self.launch().wait_ready()
        wait_for(lambda: len(self.worker_pids()) == self.workers, timeout=30, what="workers")
        return self

    def worker_pids(self) -> list[int]:
        return [pid for pid in children(self.proc.pid) if alive(pid)]

    def kill_one_worker(self) -> int:
        pid = self.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = [*children(self.proc.pid), self.proc.pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for pid in pids:
            wait_for(lambda pid=pid: not alive(pid), timeout=10, what=f"pid {pid} gone")
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")
