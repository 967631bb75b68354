"""Retry policy on a fake clock (RELIABILITY.md CQ-6, SY-5, SY-9)."""

import random
from datetime import UTC, datetime

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from integrations.autotask import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskRequestError,
    AutotaskThrottled,
    AutotaskTransientError,
    RetryPolicy,
)

from .fakes import page


def failing(errors, result="ok"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


def test_backoff_delays_are_full_jitter_within_exponential_cap(clock):
    policy = RetryPolicy(
        max_attempts=10, base_delay=1.0, max_delay=60.0, sleep=clock.sleep, rng=random.Random(1)
    )
    fn, calls = failing([AutotaskTransientError("boom")] * 9)
    assert policy.call(fn) == "ok"
    assert len(calls) == 10
    for n, delay in enumerate(clock.sleeps):
        assert 0 <= delay <= min(1.0 * 2**n, 60.0)
    # The cap is reached and respected in the later retries.
    assert max(clock.sleeps[6:]) <= 60.0


def test_attempts_are_bounded_and_the_last_error_raised(clock):
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep)
    fn, calls = failing([AutotaskTransientError(f"boom {i}") for i in range(5)])
    with pytest.raises(AutotaskTransientError, match="boom 2"):
        policy.call(fn)
    assert len(calls) == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    "error",
    [
        AutotaskRequestError("400", status=400),
        AutotaskAuthError("401", kind="bad_secret", status=401),
        AutotaskBudgetExhausted(resume_at=datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_non_retryable_and_budget_errors_are_raised_at_once(clock, error):
    policy = RetryPolicy(max_attempts=5, sleep=clock.sleep)
    fn, calls = failing([error])
    with pytest.raises(type(error)):
        policy.call(fn)
    assert len(calls) == 1
    assert clock.sleeps == []


def test_retry_after_is_a_floor(clock):
    policy = RetryPolicy(max_attempts=5, sleep=clock.sleep, rng=random.Random(3))
    fn, _calls = failing([AutotaskThrottled("429", retry_after=42.0, status=429)] * 2)
    assert policy.call(fn) == "ok"
    assert all(delay >= 42.0 for delay in clock.sleeps)


def test_retry_after_longer_than_limit_is_raised_not_slept(clock):
    policy = RetryPolicy(max_attempts=5, sleep=clock.sleep, max_retry_after=600)
    fn, _calls = failing([AutotaskThrottled("429", retry_after=601.0, status=429)])
    with pytest.raises(AutotaskThrottled) as info:
        policy.call(fn)
    assert info.value.retry_after == 601.0
    assert clock.sleeps == []


def test_client_retries_429_not_before_retry_after_then_succeeds(make_client, fake, clock):
    client = make_client()
    fake.api(
        "POST",
        "Invoices/query",
        [
            (429, {"Retry-After": "30"}, {"errors": ["threshold exceeded"]}),
            (429, {}, {"errors": ["threshold exceeded"]}),
            (200, {}, page([{"id": 1, "companyID": 2}])),
        ],
    )
    assert [i.id for i in client.iter_invoices()] == [1]
    assert len(fake.calls("POST")) == 3
    assert clock.sleeps[0] >= 30
    assert 0 <= clock.sleeps[1] <= 2
    assert client.stats.retries == 2
    assert client.stats.errors_by_kind["throttled"] == 2


def test_client_never_retries_request_errors(make_client, fake, clock):
    client = make_client()
    fake.api(
        "POST", "Invoices/query", (500, {}, {"errors": ["Unable to find limit in the Invoices"]})
    )
    with pytest.raises(AutotaskRequestError, match="Unable to find limit"):
        list(client.iter_invoices())
    assert len(fake.calls("POST")) == 1
    assert clock.sleeps == []


def test_client_retries_timeouts_up_to_max_attempts(make_client, fake, clock):
    client = make_client(max_attempts=4)
    fake.api("GET", r"Invoices/\d+", lambda s, m: requests.ReadTimeout("read timed out"))
    with pytest.raises(AutotaskTransientError) as info:
        client.get_invoice(5)
    assert info.value.kind == "timeout"
    assert info.value.retryable is True
    assert len(fake.calls("GET", "Invoices/5")) == 4
    assert client.stats.errors_by_kind["timeout"] == 4


def test_client_treats_connection_errors_as_transient(make_client, fake):
    client = make_client(max_attempts=2)
    fake.api("GET", r"Invoices/\d+", lambda s, m: requests.ConnectionError("refused"))
    with pytest.raises(AutotaskTransientError) as info:
        client.get_invoice(5)
    assert info.value.kind == "connection"


@given(
    retry_index=st.integers(min_value=0, max_value=40),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.01, max_value=5),
    cap=st.floats(min_value=0.1, max_value=600),
)
def test_backoff_is_always_within_zero_and_the_capped_exponential(retry_index, seed, base, cap):
    policy = RetryPolicy(base_delay=base, max_delay=cap, rng=random.Random(seed))
    delay = policy.delay_for(AutotaskTransientError("x"), retry_index)
    assert 0 <= delay <= min(base * 2**retry_index, cap)


@given(retry_after=st.floats(min_value=0, max_value=600), seed=st.integers(0, 2**32))
def test_retry_after_within_limit_is_never_undercut(retry_after, seed):
    policy = RetryPolicy(rng=random.Random(seed))
    error = AutotaskThrottled("429", retry_after=retry_after, status=429)
    for n in range(8):
        assert policy.delay_for(error, n) >= retry_after
