from __future__ import annotations

import random

import pytest
import requests

from integrations.autotask import AutotaskClient, NoopLimiter, RetryPolicy
from integrations.autotask.zones import ZoneCache

from .fakes import INTEGRATION_CODE, SECRET, USERNAME, ZONE_LOOKUP_URL, FakeAutotask


class FakeClock:
    """Epoch seconds that only move when the code under test sleeps."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeAutotask:
    return FakeAutotask()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake, clock):
    """A client wired to the fake transport, a fresh zone cache, no limiter, a fake clock."""

    def make(**kwargs) -> AutotaskClient:
        session = requests.Session()
        session.mount("https://", fake)
        session.mount("http://", fake)
        defaults = {
            "integration_code": INTEGRATION_CODE,
            "zone_lookup_url": ZONE_LOOKUP_URL,
            "session": session,
            "limiter": NoopLimiter(),
            "zone_cache": ZoneCache(clock=clock),
            "clock": clock,
            "retry_policy": RetryPolicy(
                max_attempts=kwargs.pop("max_attempts", 6),
                sleep=clock.sleep,
                rng=random.Random(7),
            ),
        }
        defaults.update(kwargs)
        return AutotaskClient(USERNAME, SECRET, **defaults)

    return make


@pytest.fixture
def client(make_client) -> AutotaskClient:
    return make_client()
