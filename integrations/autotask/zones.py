"""Zone discovery: which ``webservicesN`` host serves an API user (API.md §1).

``GET {AUTOTASK_ZONE_LOOKUP_URL}?user=<username>`` without auth headers (zone lookup is the one
call that needs no credentials or tracking identifier, AT-help; PS-module, apigrate and
django-autotask all call it bare). Hard-coded zone lists go stale (API.md §8.3), so we always
discover, and cache per username.

Lifetimes (issue 19). A zone changes only when Autotask moves the tenant to another zone, and
the client notices that by itself: the old zone answers 401, the client forces one fresh lookup
and, if the zone moved, retries there (``AutotaskClient._call``; django-autotask does the same),
which also replaces the shared entry for every other worker. So the cache does not have to
expire to follow a move, and a lookup per hourly sync (what a per-process cache costs a fleet
of short-lived or restarted workers) is waste. The default cache is therefore shared in Redis
(``REDIS_URL``) for ``DEFAULT_TTL_SECONDS`` (24 h): Connect's check or the first sync fills
it, every worker on every host reads it, and one lookup a day per user remains. The day bounds
the other failure API.md §1 mentions, a wrong zone that answers with empty results instead of
401. Each process keeps a copy for ``LOCAL_TTL_SECONDS`` (10 min) over Redis, so an entry
replaced after a move reaches the other processes within minutes even without their own 401.
Without Redis (scripts, unit tests) the cache is process-local.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import AutotaskError, AutotaskResponseError
from .records import ZoneInfo

logger = logging.getLogger("integrations.autotask")

DEFAULT_TTL_SECONDS = 24 * 3600
LOCAL_TTL_SECONDS = 10 * 60


class ZoneCache:
    """Per-username cache of ``ZoneInfo``: process-local dict + optional Redis (shared).

    Thread-safe. The username is hashed in Redis keys so key listings do not reveal it.
    ``ttl`` is the entry's life in Redis, or in the process when there is no Redis; with Redis
    the process keeps its copy at most ``local_ttl``. ``redis_from_settings`` takes the Redis
    of ``settings.REDIS_URL`` on first use (the process-wide default cache).
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        local_ttl: float = LOCAL_TTL_SECONDS,
        redis_client: Any = None,
        redis_from_settings: bool = False,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "autotask:zone:",
    ) -> None:
        self.ttl = ttl
        self.local_ttl = local_ttl
        self._redis_client = redis_client
        self._redis_resolved = redis_client is not None or not redis_from_settings
        self.clock = clock
        self.key_prefix = key_prefix
        self._local: dict[tuple[str, str], tuple[float, ZoneInfo]] = {}
        self._lock = threading.Lock()

    @property
    def redis(self) -> Any:
        if not self._redis_resolved:
            with self._lock:
                if not self._redis_resolved:
                    self._redis_client = _redis_from_settings()
                    self._redis_resolved = True
        return self._redis_client

    def _local_expiry(self) -> float:
        return self.clock() + (self.ttl if self.redis is None else min(self.ttl, self.local_ttl))

    def _redis_key(self, lookup_url: str, username: str) -> str:
        digest = hashlib.sha256(f"{lookup_url}\n{username.lower()}".encode()).hexdigest()[:32]
        return self.key_prefix + digest

    def get(self, lookup_url: str, username: str) -> ZoneInfo | None:
        key = (lookup_url, username.lower())
        with self._lock:
            hit = self._local.get(key)
            if hit is not None and hit[0] > self.clock():
                return hit[1]
        if self.redis is not None:
            try:
                raw = self.redis.get(self._redis_key(lookup_url, username))
            except Exception:  # a cache outage must not stop syncs
                logger.warning("autotask zone cache: Redis unavailable", exc_info=True)
                raw = None
            if raw:
                try:
                    zone = ZoneInfo.from_api(json.loads(raw))
                except (ValueError, AutotaskError):
                    zone = None
                if zone is not None:
                    with self._lock:
                        self._local[key] = (self._local_expiry(), zone)
                    return zone
        return None

    def put(self, lookup_url: str, username: str, zone: ZoneInfo) -> None:
        with self._lock:
            self._local[(lookup_url, username.lower())] = (self._local_expiry(), zone)
        if self.redis is not None:
            try:
                self.redis.set(
                    self._redis_key(lookup_url, username),
                    json.dumps(zone.to_json()),
                    ex=max(1, int(self.ttl)),
                )
            except Exception:
                logger.warning("autotask zone cache: Redis unavailable", exc_info=True)

    def clear(self) -> None:
        """Forget every entry, this process's and Redis's under ``key_prefix`` (tests: a new
        sandbox may reuse a port). Not for production: every worker would look up again."""
        with self._lock:
            self._local.clear()
        if self.redis is not None:
            try:
                for key in self.redis.scan_iter(f"{self.key_prefix}*", count=500):
                    self.redis.delete(key)
            except Exception:
                logger.warning("autotask zone cache: Redis unavailable", exc_info=True)

    def invalidate(self, lookup_url: str, username: str) -> None:
        with self._lock:
            self._local.pop((lookup_url, username.lower()), None)
        if self.redis is not None:
            try:
                self.redis.delete(self._redis_key(lookup_url, username))
            except Exception:
                logger.warning("autotask zone cache: Redis unavailable", exc_info=True)


def _redis_from_settings() -> Any:
    try:
        from django.conf import settings

        url = getattr(settings, "REDIS_URL", None)
    except Exception:  # no settings configured: a script
        return None
    if not url:
        return None
    import redis

    # Short timeouts: a slow Redis must not stall a sync, the lookup is the fallback.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


# One process-wide cache by default, so short-lived clients (one per task) share lookups, and
# shared in Redis so every worker host does (module docstring).
default_zone_cache = ZoneCache(redis_from_settings=True)


def parse_zone_response(body: Any) -> ZoneInfo:
    """Validate the zoneInformation body: ``url`` is required, everything else optional."""
    if not isinstance(body, dict):
        raise AutotaskResponseError(
            "zoneInformation returned an unexpected shape", entity="zoneInformation"
        )
    return ZoneInfo.from_api(body)
