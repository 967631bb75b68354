"""Max requests in flight per endpoint, as a sandbox database sees them: wraps the database's
own thread-limit slots (sandbox/state.py `acquire_slot`/`release_slot`), which every Autotask
request takes for its whole duration, latency included."""

from __future__ import annotations

import threading


class ConcurrencyProbe:
    def __init__(self, db):
        self.db = db
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.max: dict[str, int] = {}
        self.now_total = 0
        self.max_total = 0
        self._acquire, self._release = db.acquire_slot, db.release_slot
        db.acquire_slot, db.release_slot = self.acquire, self.release

    def acquire(self, endpoint: str) -> bool:
        ok = self._acquire(endpoint)
        if ok:
            with self.lock:
                self.now[endpoint] = self.now.get(endpoint, 0) + 1
                self.max[endpoint] = max(self.max.get(endpoint, 0), self.now[endpoint])
                self.now_total += 1
                self.max_total = max(self.max_total, self.now_total)
        return ok

    def release(self, endpoint: str) -> None:
        with self.lock:
            self.now[endpoint] -= 1
            self.now_total -= 1
        self._release(endpoint)

    def stop(self) -> None:
        self.db.acquire_slot, self.db.release_slot = self._acquire, self._release
