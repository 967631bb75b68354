"""Limits shared by every worker that talks to one Autotask database (API.md §4, §8.4, §8.5).

Two rules, both held in Redis so they hold across processes and machines:

1. **Concurrency**: at most ``max_concurrency`` (3) requests in flight per endpoint (entity) per
   database. Autotask counts 3 threads per tracking identifier x object endpoint (AT-help "API
   thread limiting"); going over gives "Thread Threshold Exceeded" errors. Slots are members of
   a sorted set scored by lease expiry, so a worker killed mid-request frees its slot when the
   lease (read timeout + margin) runs out instead of holding it forever.
2. **Budget**: our own requests in a rolling hour stay under ``budget_share`` (50 %) of the
   database's hourly threshold, which every integration on the tenant shares (API.md §8.5) and
   above 50 % of which Autotask starts adding latency (API.md §4). Our requests are counted in
   per-minute buckets, summed over the timeframe; the check and the increment are one Lua
   script, so concurrent workers cannot both take the last request. When the budget is spent,
   ``AutotaskBudgetExhausted(resume_at=…)`` is raised *instead of* sending.

How long the threshold is believed (issue 19). ``ThresholdInformation`` is itself a counted
request, and the threshold of a database is a contract figure that rarely changes (Autotask
support raises it on request). With the old 10-minute cache every hourly sync re-read it: one
request in four of a steady round. Now:

- it is re-read once ``threshold_ttl`` (24 h) has passed since the last read, by one caller
  (a claim in Redis); the others go on under the cached budget meanwhile;
- and early when our own count reaches ``threshold_recheck_share`` (80 %) of our budget, at
  most once per ``threshold_recheck_after`` (10 min) per database: a raised threshold is then
  seen before our budget runs out, a lowered one before we overrun it. The charge script marks
  the database "stale"; the next request re-reads.

Connect (``check_connection``) reads it, so a new partner's first sync already finds it, and a
steady hourly sync of nothing new costs its data requests only. The lifetimes are counted on
the limiter's clock (the read time is stored), so fake-clock tests can move through a day;
the keys also carry a Redis expiry (twice the lifetime) that only collects them.

Databases are keyed by the zone's ``ci`` (AT-help: "unique identifier for the database"), or by
a hash of the username when ``ci`` is unknown. zoneInformation is exempt (the client does not
pass it through the limiter). ``NoopLimiter`` is for unit tests and single-shot scripts.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from .errors import AutotaskBudgetExhausted, AutotaskTransientError
from .records import ThresholdInfo


def database_key(*, ci: int | None, username: str) -> str:
    """The identity Autotask's limits apply to: the database (``ci``)."""
    if ci is not None:
        return f"ci:{ci}"
    return "user:" + hashlib.sha256(username.lower().encode()).hexdigest()[:16]


class Limiter(Protocol):
    """What the client needs from a limiter (replaceable; see ``NoopLimiter``)."""

    def threshold_known(self, db_key: str) -> bool: ...

    def set_threshold(self, db_key: str, info: ThresholdInfo) -> None: ...

    def slot(self, db_key: str, endpoint: str) -> contextlib.AbstractContextManager[None]: ...


class NoopLimiter:
    """No limits, no Redis: unit tests, benchmarks, one-off scripts."""

    def threshold_known(self, db_key: str) -> bool:
        return True

    def set_threshold(self, db_key: str, info: ThresholdInfo) -> None:
        return None

    @contextlib.contextmanager
    def slot(self, db_key: str, endpoint: str) -> Iterator[None]:
        yield


class LocalLimiter(NoopLimiter):
    """Concurrency limit inside one process only (threads), without a budget. Useful for the
    parallel bench reader when no Redis is around; production uses ``RedisLimiter``."""

    def __init__(self, max_concurrency: int = 3) -> None:
        self.max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._semaphores: dict[tuple[str, str], threading.BoundedSemaphore] = {}

    @contextlib.contextmanager
    def slot(self, db_key: str, endpoint: str) -> Iterator[None]:
        key = (db_key, endpoint.lower())
        with self._lock:
            semaphore = self._semaphores.setdefault(
                key, threading.BoundedSemaphore(self.max_concurrency)
            )
        with semaphore:
            yield


# One round trip for "take a concurrency slot, then charge the budget" (the reader of a sync
# waits on these before every request). KEYS[1] = slot sorted set, KEYS[2] = budget limit,
# KEYS[3] = budget window (minutes), KEYS[4] = time of the last threshold read, KEYS[5] = the
# "re-read the threshold" mark. ARGV: now, slot expiry score, max concurrency, token, slot key
# TTL (ms), take a slot (1|0), current minute, bucket key prefix, bucket TTL extra (s), share
# of the budget that asks for a re-read, least seconds between such re-reads, mark TTL (s).
# The minute buckets ("<prefix><minute>") are named here from the window: they share the
# "{db}" hash tag of the declared keys, so they live on the same Redis Cluster slot.
# Returns {status, used including this one, index of the oldest non-empty bucket or -1,
# window}: status 1 = slot taken and charged, 0 = budget exhausted (nothing taken),
# -1 = no free slot (nothing charged).
_ACQUIRE_AND_CHARGE = """
local take_slot = ARGV[6] == '1'
if take_slot then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return {-1, 0, -1, 0}
  end
end
local window = tonumber(redis.call('GET', KEYS[3]) or '60')
local limit = redis.call('GET', KEYS[2])
local minute = tonumber(ARGV[7])
local buckets = {}
for i = 0, window - 1 do
  buckets[i + 1] = ARGV[8] .. (minute - i)
end
local counts = redis.call('MGET', unpack(buckets))
local total = 0
for i = 1, #counts do
  if counts[i] then total = total + tonumber(counts[i]) end
end
if limit and total + 1 > tonumber(limit) then
  local oldest = -1
  for i = #counts, 1, -1 do
    if counts[i] and tonumber(counts[i]) > 0 then oldest = i - 1; break end
  end
  return {0, total, oldest, window}
end
redis.call('INCR', buckets[1])
redis.call('EXPIRE', buckets[1], window * 60 + tonumber(ARGV[9]))
if limit and total + 1 >= tonumber(limit) * tonumber(ARGV[10]) then
  local read = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tonumber(ARGV[1]) - read >= tonumber(ARGV[11]) then
    redis.call('SET', KEYS[5], '1', 'EX', ARGV[12])
  end
end
if take_slot then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return {1, total + 1, -1, window}
"""

# Is the cached threshold good to use? KEYS: limit, read time, stale mark, refresh claim.
# ARGV: now, lifetime (s), claim TTL (s). 1 = use it; 0 = this caller reads ThresholdInformation
# (none cached, or due and this caller won the claim: the others keep the cached budget).
_THRESHOLD_KNOWN = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local read = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) - read < tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[3]) == 0 then
  return 1
end
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[3]) then
  return 0
end
return 1
"""


class RedisLimiter:
    """Cross-worker concurrency slots and hourly request budget per Autotask database."""

    def __init__(
        self,
        redis_client: Any,
        *,
        max_concurrency: int = 3,
        budget_share: float = 0.5,
        lease_seconds: float = 45.0,
        slot_wait_timeout: float = 60.0,
        threshold_ttl: float = 24 * 3600.0,
        threshold_recheck_share: float = 0.8,
        threshold_recheck_after: float = 600.0,
        threshold_claim_seconds: int = 60,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        key_prefix: str = "autotask:",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 0 < budget_share <= 1:
            raise ValueError("budget_share must be in (0, 1]")
        self.redis = redis_client
        self.max_concurrency = max_concurrency
        self.budget_share = budget_share
        self.lease_seconds = lease_seconds
        self.slot_wait_timeout = slot_wait_timeout
        self.threshold_ttl = threshold_ttl
        self.threshold_recheck_share = threshold_recheck_share
        self.threshold_recheck_after = threshold_recheck_after
        self.threshold_claim_seconds = threshold_claim_seconds
        self.clock = clock
        self.sleep = sleep
        self.key_prefix = key_prefix
        self._acquire_and_charge = redis_client.register_script(_ACQUIRE_AND_CHARGE)
        self._threshold_known = redis_client.register_script(_THRESHOLD_KNOWN)

    @classmethod
    def from_settings(cls, **overrides: Any) -> RedisLimiter:
        """Built from ``settings.REDIS_URL`` and the ``AUTOTASK_*`` limits."""
        import redis
        from django.conf import settings

        if not settings.REDIS_URL:
            raise ValueError("RedisLimiter needs settings.REDIS_URL")
        kwargs: dict[str, Any] = {
            "max_concurrency": settings.AUTOTASK_MAX_CONCURRENCY,
            "budget_share": settings.AUTOTASK_BUDGET_SHARE,
            # A lease must outlive the longest request it guards.
            "lease_seconds": settings.AUTOTASK_TIMEOUT_SECONDS
            + settings.AUTOTASK_CONNECT_TIMEOUT_SECONDS
            + 10.0,
        }
        kwargs.update(overrides)
        return cls(redis.Redis.from_url(settings.REDIS_URL), **kwargs)

    # --- keys ------------------------------------------------------------------------------
    # "{db}" is a Redis Cluster hash tag: all keys of one database live on one slot, which the
    # budget script (many keys) needs.

    def _key(self, db_key: str, *parts: str) -> str:
        return self.key_prefix + "{" + db_key + "}:" + ":".join(parts)

    def _limit_key(self, db_key: str) -> str:
        return self._key(db_key, "budget", "limit")

    def _window_key(self, db_key: str) -> str:
        return self._key(db_key, "budget", "window")

    def _read_key(self, db_key: str) -> str:
        return self._key(db_key, "budget", "read")

    def _stale_key(self, db_key: str) -> str:
        return self._key(db_key, "budget", "stale")

    def _claim_key(self, db_key: str) -> str:
        return self._key(db_key, "budget", "claim")

    def _keep_seconds(self) -> int:
        # Redis only collects the keys; the lifetime is checked on our clock (docstring).
        return max(1, int(2 * self.threshold_ttl))

    # --- threshold ---------------------------------------------------------------------------

    def threshold_known(self, db_key: str) -> bool:
        """False when the caller should read ThresholdInformation now: none cached, or the
        cached one is due (older than ``threshold_ttl``, or marked near the budget) and this
        caller won the claim to re-read it."""
        try:
            return bool(
                self._threshold_known(
                    keys=[
                        self._limit_key(db_key),
                        self._read_key(db_key),
                        self._stale_key(db_key),
                        self._claim_key(db_key),
                    ],
                    args=[self.clock(), self.threshold_ttl, self.threshold_claim_seconds],
                )
            )
        except Exception as exc:
            raise _limiter_down(exc) from exc

    def set_threshold(self, db_key: str, info: ThresholdInfo) -> None:
        """Store our budget: ``floor(share * threshold)`` per ``timeframe`` minutes."""
        limit = math.floor(info.external_request_threshold * self.budget_share)
        window = max(1, info.request_threshold_timeframe or 60)
        keep = self._keep_seconds()
        try:
            pipe = self.redis.pipeline()
            pipe.set(self._limit_key(db_key), limit, ex=keep)
            pipe.set(self._window_key(db_key), window, ex=keep)
            pipe.set(self._read_key(db_key), repr(self.clock()), ex=keep)
            pipe.delete(self._stale_key(db_key), self._claim_key(db_key))
            pipe.execute()
        except Exception as exc:
            raise _limiter_down(exc) from exc

    # --- budget ------------------------------------------------------------------------------

    def charge(self, db_key: str) -> int:
        """Count one request against the budget, or raise ``AutotaskBudgetExhausted``.

        Returns the number of requests used in the current window (including this one).
        """
        return self._run(db_key, slot_key=None, token="")[1]  # no slot asked: charged or raised

    def _run(self, db_key: str, *, slot_key: str | None, token: str) -> tuple[int, int]:
        """The script: (1, used) when charged (and the slot taken), (-1, 0) when no slot was
        free; raises AutotaskBudgetExhausted when the budget is spent (nothing taken)."""
        now = self.clock()
        minute = int(now // 60)
        try:
            status, used, oldest, window = self._acquire_and_charge(
                keys=[
                    slot_key or self._key(db_key, "slots", "-"),
                    self._limit_key(db_key),
                    self._window_key(db_key),
                    self._read_key(db_key),
                    self._stale_key(db_key),
                ],
                args=[
                    now,
                    now + self.lease_seconds,
                    self.max_concurrency,
                    token,
                    int(self.lease_seconds * 1000) + 1000,
                    1 if slot_key else 0,
                    minute,
                    self._key(db_key, "budget", "m", ""),
                    120,
                    self.threshold_recheck_share,
                    self.threshold_recheck_after,
                    self._keep_seconds(),
                ],
            )
        except Exception as exc:
            raise _limiter_down(exc) from exc
        status, used = int(status), int(used)
        if status != 0:
            return status, used
        oldest, window = int(oldest), int(window)
        # The oldest counted minute leaves the rolling window at (its start + window).
        resume_minute = minute - oldest + window if oldest >= 0 else minute + 1
        resume_at = datetime.fromtimestamp(resume_minute * 60, tz=UTC)
        raise AutotaskBudgetExhausted(
            f"Autotask request budget exhausted ({used} requests in the last {window} min), "
            f"resume at {resume_at.isoformat()}",
            resume_at=resume_at,
        )

    def usage(self, db_keys: list[str]) -> dict[str, tuple[int, int | None]]:
        """Read-only, for ops: {db_key: (requests counted in the current window, our budget or
        None when the threshold is not cached)}. Two round trips whatever the number of keys."""
        minute = int(self.clock() // 60)
        pipe = self.redis.pipeline(transaction=False)
        for db_key in db_keys:
            pipe.get(self._window_key(db_key))
            pipe.get(self._limit_key(db_key))
        answers = pipe.execute()
        limits = {}
        for i, db_key in enumerate(db_keys):
            window, limit = answers[2 * i], answers[2 * i + 1]
            window = int(window or 60)
            keys = [self._key(db_key, "budget", "m", str(minute - j)) for j in range(window)]
            pipe.mget(keys)
            limits[db_key] = None if limit is None else int(limit)
        counts = pipe.execute()
        return {
            db_key: (sum(int(c) for c in buckets if c), limits[db_key])
            for db_key, buckets in zip(db_keys, counts, strict=True)
        }

    # --- concurrency -------------------------------------------------------------------------

    def in_flight(self, db_key: str, endpoint: str) -> int:
        key = self._key(db_key, "slots", endpoint.lower())
        self.redis.zremrangebyscore(key, "-inf", self.clock())
        return int(self.redis.zcard(key))

    @contextlib.contextmanager
    def slot(self, db_key: str, endpoint: str) -> Iterator[None]:
        """Hold one of the endpoint's concurrency slots and charge the budget for one request,
        in one round trip. Waits (bounded by ``slot_wait_timeout``) for a free slot, polling
        with jittered backoff; a spent budget raises with nothing taken and nothing sent."""
        key = self._key(db_key, "slots", endpoint.lower())
        token = uuid.uuid4().hex
        deadline = self.clock() + self.slot_wait_timeout
        pause = 0.01
        while self._run(db_key, slot_key=key, token=token)[0] != 1:
            if self.clock() >= deadline:
                raise AutotaskTransientError(
                    f"no free Autotask concurrency slot for {endpoint} within "
                    f"{self.slot_wait_timeout:.0f} s",
                    kind="slot_wait",
                    entity=endpoint,
                )
            self.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, 0.25)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the lease expires anyway
                self.redis.zrem(key, token)


def _limiter_down(exc: Exception) -> AutotaskTransientError:
    return AutotaskTransientError(
        f"Autotask limiter (Redis) unavailable: {type(exc).__name__}", kind="limiter"
    )
