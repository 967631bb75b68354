"""Injected faults: what a flaky Autotask (or the load balancer in front of it) does.

Two mechanisms per database:

* a *share*: each request fails with probability ``error_rate``, the kind drawn from
  ``kinds`` — both from a seeded RNG, so a test run is reproducible;
* a *queue*: ``fail_next(count, kind)`` makes the next ``count`` matching requests fail with
  that kind, deterministically (a 429 burst, one timeout on the PATCH, …).

Kinds: ``503_html``, ``503_empty``, ``500_plain`` (500 without ``errors``), ``429`` (with
``Retry-After`` when ``retry_after`` is given), ``500_threshold`` (a 500 whose errors carry the
hourly-threshold text, also with ``Retry-After`` when given: how Autotask may answer an
exceeded threshold, UNVERIFIED), ``timeout`` (hold the request ``seconds``, then
drop the connection without answering), ``drop`` (close at once), ``malformed_json`` (200 with
truncated JSON), ``html_200`` and ``html_500`` (an IIS/ASP.NET error page as text/html).

Faults apply to authenticated Autotask requests; zoneInformation only fails through a fault
whose ``entity`` is ``"zoneInformation"`` (so a share does not break discovery by accident).
"""

from __future__ import annotations

import json
import random
import threading
from collections import deque
from dataclasses import asdict, dataclass

from sandbox.errors import HOURLY_THRESHOLD

FAULT_KINDS = frozenset(
    {"503_html", "503_empty", "500_plain", "429", "500_threshold", "timeout", "drop",
     "malformed_json", "html_200", "html_500"}
)  # fmt: skip
DEFAULT_KINDS = ("503_html", "503_empty", "500_plain")

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Runtime Error</title></head><body>"
    b"<h1>Server Error in '/ATServicesRest' Application.</h1><h2><i>Runtime Error</i></h2>"
    b"<p>An application error occurred on the server.</p></body></html>"
)
HTML_503 = (
    b"<html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>Service Unavailable</h1><p>The service is temporarily unavailable.</p></body></html>"
)
MALFORMED_JSON = b'{"items":[{"id":1,"companyName":"Trunc'


@dataclass(frozen=True)
class Fault:
    kind: str
    entity: str | None = None  # None = any endpoint; matched case-insensitively
    retry_after: int | None = None
    seconds: float = 30.0  # how long a timeout holds the request

    def matches(self, entity: str, explicit_only: bool) -> bool:
        if self.entity is None:
            return not explicit_only
        return self.entity.lower() == entity.lower()


def check_kind(kind: str) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
    return kind


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self.configure()

    def configure(
        self,
        *,
        error_rate: float = 0.0,
        kinds: tuple[str, ...] | list[str] = DEFAULT_KINDS,
        seed: int = 0,
        timeout_seconds: float = 30.0,
        retry_after: int | None = None,
        entities: list[str] | None = None,
    ) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        kinds = tuple(check_kind(k) for k in kinds) or DEFAULT_KINDS
        with self._lock:
            self.error_rate = float(error_rate)
            self.kinds = kinds
            self.seed = seed
            self.timeout_seconds = float(timeout_seconds)
            self.retry_after = retry_after
            self.entities = {e.lower() for e in entities} if entities else None
            self._rng = random.Random(seed)

    def fail_next(
        self,
        count: int,
        kind: str,
        *,
        entity: str | None = None,
        retry_after: int | None = None,
        seconds: float = 30.0,
    ) -> None:
        fault = Fault(check_kind(kind), entity, retry_after, float(seconds))
        with self._lock:
            self._queue.extend([fault] * int(count))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
        self.configure()

    def draw(self, entity: str, *, explicit_only: bool = False) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._queue):
                if fault.matches(entity, explicit_only):
                    del self._queue[i]
                    return fault
            if explicit_only or not self.error_rate:
                return None
            if self.entities is not None and entity.lower() not in self.entities:
                return None
            if self._rng.random() >= self.error_rate:
                return None
            kind = self._rng.choice(self.kinds)
            return Fault(kind, None, self.retry_after, self.timeout_seconds)

    def describe(self) -> dict:
        with self._lock:
            return {
                "error_rate": self.error_rate,
                "kinds": list(self.kinds),
                "seed": self.seed,
                "timeout_seconds": self.timeout_seconds,
                "retry_after": self.retry_after,
                "entities": sorted(self.entities) if self.entities else None,
                "queued": [asdict(f) for f in self._queue],
            }


def fault_response(fault: Fault, threshold: int = 10_000) -> tuple[int, dict[str, str], bytes, str]:
    """(status, extra headers, body, content type) for the kinds that answer at all.
    ``threshold`` is the database's hourly threshold, named by ``500_threshold``."""
    json_type = "application/json; charset=utf-8"
    if fault.kind == "503_html":
        return 503, {}, HTML_503, "text/html"
    if fault.kind == "503_empty":
        return 503, {}, b"", "text/plain"
    if fault.kind == "500_plain":
        return 500, {}, b'{"Message":"An error has occurred."}', json_type
    if fault.kind == "429":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        body = b'{"errors":["Too many requests: the request threshold has been exceeded."]}'
        return 429, headers, body, json_type
    if fault.kind == "500_threshold":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        text = HOURLY_THRESHOLD.format(threshold=threshold)
        return 500, headers, json.dumps({"errors": [text]}).encode(), json_type
    if fault.kind == "malformed_json":
        return 200, {}, MALFORMED_JSON, json_type
    if fault.kind == "html_200":
        return 200, {}, HTML_PAGE, "text/html"
    if fault.kind == "html_500":
        return 500, {}, HTML_PAGE, "text/html"
    raise ValueError(f"{fault.kind} has no response")
