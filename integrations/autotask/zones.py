"""Zone discovery: which ``webservicesN`` host serves an API user (API.md §1).

``GET {AUTOTASK_ZONE_LOOKUP_URL}?user=<username>`` without auth headers (zone lookup is the one
call that needs no credentials or tracking identifier, AT-help; PS-module, apigrate and
django-autotask all call it bare). Hard-coded zone lists go stale (API.md §8.3), so we always
discover, and cache per username: in-process with a TTL, and optionally in Redis so a fleet of
workers asks once. The client forces a fresh lookup once after a 401 (django-autotask does the
same), because a tenant moved to another zone answers 401 on the old one.
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

DEFAULT_TTL_SECONDS = 6 * 3600


class ZoneCache:
    """Per-username cache of ``ZoneInfo``: process-local dict + optional Redis (shared).

    Thread-safe. The username is hashed in Redis keys so key listings do not reveal it.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        redis_client: Any = None,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "autotask:zone:",
    ) -> None:
        self.ttl = ttl
        self.redis = redis_client
        self.clock = clock
        self.key_prefix = key_prefix
        self._local: dict[tuple[str, str], tuple[float, ZoneInfo]] = {}
        self._lock = threading.Lock()

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
                        self._local[key] = (self.clock() + self.ttl, zone)
                    return zone
        return None

    def put(self, lookup_url: str, username: str, zone: ZoneInfo) -> None:
        with self._lock:
            self._local[(lookup_url, username.lower())] = (self.clock() + self.ttl, zone)
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
        """Forget every process-local entry (tests: a new sandbox may reuse a port)."""
        with self._lock:
            self._local.clear()

    def invalidate(self, lookup_url: str, username: str) -> None:
        with self._lock:
            self._local.pop((lookup_url, username.lower()), None)
        if self.redis is not None:
            try:
                self.redis.delete(self._redis_key(lookup_url, username))
            except Exception:
                logger.warning("autotask zone cache: Redis unavailable", exc_info=True)


# One process-wide cache by default, so short-lived clients (one per task) share lookups.
default_zone_cache = ZoneCache()


def parse_zone_response(body: Any) -> ZoneInfo:
    """Validate the zoneInformation body: ``url`` is required, everything else optional."""
    if not isinstance(body, dict):
        raise AutotaskResponseError(
            "zoneInformation returned an unexpected shape", entity="zoneInformation"
        )
    return ZoneInfo.from_api(body)
