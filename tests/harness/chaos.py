"""Harness of the reconciliation chaos test (tests/chaos/): write-back faults aimed at PATCHes,
a gunicorn serving the webhook endpoint, and Celery workers with a short settle time.

- `WritebackFaults.install(server, seed=…)`: a share of the `PATCH /Invoices` requests (the
  write-back; nothing else) is answered 429 with a short `Retry-After` or 503, drawn from a seeded
  RNG; and the first accepted PATCH of a few (invoice, paidDate) pairs is answered 200 but not
  applied (Autotask keeps the previous paidDate: what the relay's read-back is for, see
  payments/services/writeback.py). The sandbox's own fault plan cannot aim at a method, so the
  server's API object is wrapped by a tap that notes the request being handled (each request has
  its own server thread) and a `FaultPlan` subclass on every database reads it. Everything else
  (auth, thread limit, threshold, request log) is the sandbox's own code path. `enabled = False`
  turns both off (quiesce).
- `Gunicorn(env, log_path).start()`: `gunicorn config.wsgi:application` on a free 127.0.0.1
  port, killed by pid (as in tests/payments/test_storm.py).
- `ChaosWorker(env, log_path, queues=…, concurrency=…)`: a `tests.harness.workers.Worker` whose
  process runs this module's `__main__`: the sync's settle time (sync/tuning.py, 10 minutes:
  invoices younger than that are left for the next run) becomes
  `PAYSYNC_TEST_SETTLE_SECONDS`, so an invoice Autotask re-issues during a two-minute test is
  read by the next hourly run, as it would be ten minutes later in production. The sync lease
  (`PAYSYNC_TEST_SYNC_LEASE_SECONDS`) is shortened as `tests.harness.workers` does.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter

from sandbox.faults import Fault, FaultPlan
from tests.harness.gunicorn import Gunicorn, free_port  # noqa: F401 - re-exported
from tests.harness.workers import ROOT, Worker, wait_for

SETTLE_ENV = "PAYSYNC_TEST_SETTLE_SECONDS"


# --- write-back faults ------------------------------------------------------------------------


class _RequestTap:
    """Stands in for the sandbox's API object: notes the request being handled in a
    thread-local and hands it to the real one; applies the planned lost writes."""

    def __init__(self, api, faults: WritebackFaults):
        self._api, self._faults = api, faults

    def handle(self, req):
        faults = self._faults
        faults.local.req = req
        try:
            key = faults.patch_key(req)
            if key is None:
                return self._api.handle(req)
            db = faults.server.find_database(req.headers.get("UserName") or "")
            before = db.get_invoice(key[0]) if db is not None else None
            response = self._api.handle(req)
            if (
                before is not None
                and response.status == 200
                and faults.enabled
                and faults.lose_this_write(key)
            ):
                # Accepted, not applied: Autotask keeps what it had.
                db.update_invoice(key[0], paidDate=before["paidDate"])
            return response
        finally:
            faults.local.req = None


class _PatchFaultPlan(FaultPlan):
    """A database's fault plan: its own queue and share as usual, plus the shared write-back
    faults for `PATCH /Invoices`."""

    def __init__(self, faults: WritebackFaults):
        super().__init__()
        self._chaos = faults

    def draw(self, entity: str, *, explicit_only: bool = False) -> Fault | None:
        fault = self._chaos.draw_patch_fault(entity)
        if fault is not None:
            return fault
        return super().draw(entity, explicit_only=explicit_only)


class WritebackFaults:
    """Faults of the write-back PATCHes of every database of one sandbox server (see the module
    docstring). Counters: `counts` (kind → answers), `lost` (pairs whose first accepted PATCH
    was not applied)."""

    def __init__(
        self,
        server,
        *,
        seed: int,
        share: float = 0.2,
        retry_after: int = 1,
        kinds: tuple[str, ...] = ("429", "503_html"),
        lost_share: float = 0.05,
    ):
        self.server = server
        self.share, self.retry_after, self.kinds = share, retry_after, kinds
        self.lost_share = lost_share
        self.enabled = True
        self.local = threading.local()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._lost_decided: dict[tuple[int, str | None], bool] = {}
        self.lost: list[tuple[int, str | None]] = []
        self.counts: Counter = Counter()

    @classmethod
    def install(cls, server, **kwargs) -> WritebackFaults:
        faults = cls(server, **kwargs)
        for db in server.databases:
            db.faults = _PatchFaultPlan(faults)
        server.api = _RequestTap(server.api, faults)
        return faults

    @staticmethod
    def patch_key(req) -> tuple[int, str | None] | None:
        """(invoice id, paidDate sent) of a write-back PATCH, else None."""
        if req is None or req.method != "PATCH":
            return None
        if not req.path.lower().rstrip("/").endswith("/invoices"):
            return None
        try:
            body = json.loads(req.body)
            if "paidDate" not in body:
                return None
            return int(body["id"]), body.get("paidDate")
        except (ValueError, KeyError, TypeError):
            return None

    def draw_patch_fault(self, entity: str) -> Fault | None:
        if not self.enabled or entity.lower() != "invoices":
            return None
        if self.patch_key(getattr(self.local, "req", None)) is None:
            return None
        with self._lock:
            if self._rng.random() >= self.share:
                self.counts["ok"] += 1
                return None
            kind = self._rng.choice(self.kinds)
            self.counts[kind] += 1
        return Fault(kind, None, self.retry_after if kind == "429" else None)

    def lose_this_write(self, key: tuple[int, str | None]) -> bool:
        with self._lock:
            if key in self._lost_decided:
                return False  # only the first accepted PATCH of a pair is ever lost
            lose = self._rng.random() < self.lost_share
            self._lost_decided[key] = lose
            if lose:
                self.lost.append(key)
            return lose


# --- processes --------------------------------------------------------------------------------


class ChaosWorker(Worker):
    """A real Celery worker whose sync settle time is `PAYSYNC_TEST_SETTLE_SECONDS` (module
    docstring). `launch()` and `wait_ready()` split `start()` so several start together."""

    def launch(self) -> ChaosWorker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.chaos", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout: float = 60) -> ChaosWorker:
        wait_for(
            lambda: " ready." in self.log(since_start=True) or self.proc.poll() is not None,
            timeout=timeout,
            what="worker ready",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited at start:\n{self.log()[-4000:]}")
        return self

    def start(self, *, ready_timeout: float = 60) -> ChaosWorker:
        return self.launch().wait_ready(ready_timeout)


def main() -> None:  # pragma: no cover - runs in the worker subprocess
    from datetime import timedelta

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    settle = os.environ.get(SETTLE_ENV)
    if settle:
        import sync.engine

        sync.engine.SETTLE_TIME = timedelta(seconds=float(settle))
    lease = os.environ.get("PAYSYNC_TEST_SYNC_LEASE_SECONDS")
    if lease:
        import sync.services.leases

        sync.services.leases.LEASE = timedelta(seconds=float(lease))
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", "-A", "config", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
