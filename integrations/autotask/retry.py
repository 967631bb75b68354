"""Bounded retries with exponential backoff and full jitter (RELIABILITY.md CQ-6, SY-5, SY-9).

Only errors with ``retryable=True`` are retried (throttling, transient network/5xx); auth,
request (4xx/business 500) and response-shape errors are raised at once. A server Retry-After
is a floor: we never retry before it elapses. A Retry-After longer than ``max_retry_after``
(10 minutes by default) is raised instead of slept through, so the caller can store a
``next_attempt_at`` and free the worker. Budget exhaustion is never slept through either.

Sleep, clock and random source are injectable so tests run on a fake clock.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import AutotaskBudgetExhausted, AutotaskError, AutotaskThrottled

logger = logging.getLogger("integrations.autotask")

T = TypeVar("T")


@dataclass
class RetryPolicy:
    """``max_attempts`` counts the first try (settings.AUTOTASK_MAX_RETRIES + 1).

    The delay before retry ``n`` (0-based) is ``uniform(0, min(cap, base * 2**n))`` — "full
    jitter", so workers hit by the same outage spread out instead of retrying in lockstep.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 600.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, retry_index: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2**retry_index))
        return self.rng.uniform(0.0, ceiling)

    def delay_for(self, error: AutotaskError, retry_index: int) -> float | None:
        """Seconds to wait before the next attempt, or None to raise ``error`` now."""
        if not error.retryable or isinstance(error, AutotaskBudgetExhausted):
            return None
        delay = self.backoff(retry_index)
        if isinstance(error, AutotaskThrottled) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            delay = max(delay, error.retry_after)
        return delay

    def call(
        self,
        fn: Callable[[], T],
        *,
        describe: str = "request",
        on_retry: Callable[[AutotaskError, float], None] | None = None,
    ) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except AutotaskError as error:
                attempt += 1
                delay = self.delay_for(error, attempt - 1)
                if delay is None or attempt >= self.max_attempts:
                    raise
                logger.warning(
                    "autotask %s failed (%s, attempt %d/%d), retrying in %.2f s",
                    describe,
                    error.kind,
                    attempt,
                    self.max_attempts,
                    delay,
                )
                if on_retry is not None:
                    on_retry(error, delay)
                self.sleep(delay)
