"""Per-client request accounting, so a sync run can record how many requests it used
(STYLE.md: ``SyncRun`` carries "requests used"). Thread-safe; a caller may share one object
between several clients."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestStats:
    """Requests actually sent (every attempt, incl. retries and the zone lookup)."""

    count: int = 0
    total_seconds: float = 0.0
    retries: int = 0
    by_entity: Counter[str] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, entity: str, seconds: float, error_kind: str | None = None) -> None:
        with self._lock:
            self.count += 1
            self.total_seconds += seconds
            self.by_entity[entity] += 1
            if error_kind:
                self.errors_by_kind[error_kind] += 1

    def record_error(self, error_kind: str) -> None:
        """An error that happened without sending (budget, slot wait, limiter down)."""
        with self._lock:
            self.errors_by_kind[error_kind] += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "count": self.count,
                "total_seconds": round(self.total_seconds, 3),
                "retries": self.retries,
                "by_entity": dict(self.by_entity),
                "errors_by_kind": dict(self.errors_by_kind),
            }
