"""Pooled HTTP sessions for the Autotask client: per origin (an Autotask zone, or the zone
lookup host) per process, reused across clients, so a write-back PATCH or a sync's next
request goes out on a kept-alive connection instead of a new TCP (and, against the real
Autotask, TLS) handshake per client (issue 19).

A ``requests.Session`` is not documented as thread-safe, so sessions are never shared while in
use: a request checks one out (``SessionPool.session(url)``), sends, and gives it back. Idle
sessions are kept last-in first-out, so the warmest connection is reused first; a thread pool
of N syncs ends up with at most N sessions per origin. Cookies are disabled (a cookie Autotask
sets must not follow the next partner's request on the same session). After a fork (Celery's
prefork children) the child starts with an empty pool: sockets are never shared across
processes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

Origin = tuple[str, str, int | None]


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return (
        scheme,
        (parts.hostname or "").lower(),
        parts.port or {"http": 80, "https": 443}.get(scheme),
    )


def new_session() -> requests.Session:
    """A session with cookies disabled, no adapter retries (the client's RetryPolicy decides)
    and keep-alive (requests' default)."""
    session = requests.Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class SessionPool:
    """Idle sessions per origin; see the module docstring. ``max_idle`` bounds what is kept
    per origin (a burst of threads beyond it closes its extra sessions on return)."""

    def __init__(self, *, max_idle: int = 128) -> None:
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: dict[Origin, list[requests.Session]] = {}
        self.created = 0  # sessions made since the pool started (tests, bench)

    @contextlib.contextmanager
    def session(self, url: str) -> Iterator[requests.Session]:
        origin = origin_of(url)
        with self._lock:
            idle = self._idle.get(origin)
            session = idle.pop() if idle else None
            if session is None:
                self.created += 1
        if session is None:
            session = new_session()
        try:
            yield session
        finally:
            with self._lock:
                idle = self._idle.setdefault(origin, [])
                keep = len(idle) < self.max_idle
                if keep:
                    idle.append(session)
            if not keep:
                session.close()

    def idle(self, url: str) -> int:
        with self._lock:
            return len(self._idle.get(origin_of(url), []))

    def clear(self) -> None:
        with self._lock:
            sessions = [s for idle in self._idle.values() for s in idle]
            self._idle.clear()
        for session in sessions:
            session.close()

    def _forget_after_fork(self) -> None:
        # The parent's sockets must not be used by a child: drop (do not close) them.
        self._lock = threading.Lock()
        self._idle = {}


default_session_pool = SessionPool()
os.register_at_fork(after_in_child=default_session_pool._forget_after_fork)
