"""Shared limits in the real (throwaway) Redis that bin/test starts (limits.py, API.md §4)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings

from integrations.autotask import AutotaskBudgetExhausted, AutotaskTransientError, RedisLimiter
from integrations.autotask.records import ThresholdInfo

from .fakes import invoice, page


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def make_limiter(redis_client):
    prefixes = []

    def make(**kwargs) -> RedisLimiter:
        prefix = f"test-autotask-{uuid.uuid4().hex[:8]}:"
        prefixes.append(prefix)
        return RedisLimiter(redis_client, key_prefix=prefix, **kwargs)

    yield make
    for prefix in prefixes:
        for key in redis_client.scan_iter(f"{prefix}*"):
            redis_client.delete(key)


def threshold(total: int, used: int = 0) -> dict:
    return {
        "externalRequestThreshold": total,
        "requestThresholdTimeframe": 60,
        "currentTimeframeRequestCount": used,
    }


def test_four_threads_never_have_more_than_three_requests_in_flight(
    make_client, fake, make_limiter
):
    limiter = make_limiter(max_concurrency=3)
    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def slow_query(sent, match):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return 200, {}, page([invoice(1)])

    fake.api("GET", "ThresholdInformation", (200, {}, threshold(10_000)))
    fake.api("POST", "Invoices/query", slow_query)
    client = make_client(limiter=limiter)
    client.check_connection()  # zone + threshold once, before the threads start
    errors = []

    def worker():
        try:
            for _ in range(5):
                assert len(list(client.iter_invoices())) == 1
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert peak == 3
    assert len(fake.calls("POST", "Invoices/query")) == 20
    assert limiter.in_flight(client.db_key, "Invoices") == 0


def test_other_endpoints_have_their_own_slots(make_limiter):
    limiter = make_limiter(max_concurrency=1, slot_wait_timeout=0.0)
    limiter.set_threshold("ci:1", ThresholdInfo(10_000, 60, 0))
    with (
        limiter.slot("ci:1", "Invoices"),
        limiter.slot("ci:1", "Companies"),
        pytest.raises(AutotaskTransientError) as info,
        limiter.slot("ci:1", "Invoices"),
    ):
        pass
    assert info.value.kind == "slot_wait"
    assert info.value.retryable is True


def test_a_crashed_holder_frees_its_slot_when_the_lease_expires(make_limiter, clock):
    limiter = make_limiter(
        max_concurrency=1, lease_seconds=40, slot_wait_timeout=5, clock=clock, sleep=clock.sleep
    )
    limiter.set_threshold("ci:1", ThresholdInfo(10_000, 60, 0))
    crashed = limiter.slot("ci:1", "Invoices")
    crashed.__enter__()  # never exited: the worker died holding it
    with (
        pytest.raises(AutotaskTransientError, match="no free Autotask concurrency slot"),
        limiter.slot("ci:1", "Invoices"),
    ):
        pass
    clock.now += 41
    with limiter.slot("ci:1", "Invoices"):
        assert limiter.in_flight("ci:1", "Invoices") == 1


def test_budget_exhausted_raises_with_resume_at_and_sends_nothing(
    make_client, fake, make_limiter, clock
):
    limiter = make_limiter(budget_share=0.5, clock=clock)
    fake.api("GET", "ThresholdInformation", (200, {}, threshold(4)))  # our budget: 2 an hour
    fake.api("GET", r"Invoices/\d+", (200, {}, {"item": invoice(1)}))
    client = make_client(limiter=limiter)
    client.get_invoice(1)  # ThresholdInformation (1) + Invoices/1 (2)
    sent_before = len(fake.sent)
    with pytest.raises(AutotaskBudgetExhausted) as info:
        client.get_invoice(1)
    assert len(fake.sent) == sent_before  # nothing sent
    first_minute = int(clock.now // 60) * 60
    assert info.value.resume_at == datetime.fromtimestamp(first_minute + 3600, UTC)
    assert "resume at" in str(info.value)
    assert client.stats.errors_by_kind["budget"] == 1
    # The rolling hour frees the oldest minute; then requests flow again.
    clock.now = first_minute + 3600
    assert client.get_invoice(1).id == 1


def test_budget_counts_every_worker_against_one_database(make_limiter, clock):
    limiter_a = make_limiter(budget_share=0.5, clock=clock)
    limiter_b = RedisLimiter(limiter_a.redis, key_prefix=limiter_a.key_prefix, clock=clock)
    limiter_a.set_threshold("ci:7", ThresholdInfo(10, 60, 0))
    used = [limiter_a.charge("ci:7"), limiter_b.charge("ci:7"), limiter_a.charge("ci:7")]
    clock.now += 120
    used += [limiter_b.charge("ci:7"), limiter_a.charge("ci:7")]
    assert used == [1, 2, 3, 4, 5]
    with pytest.raises(AutotaskBudgetExhausted):
        limiter_b.charge("ci:7")
    assert not make_limiter().threshold_known("ci:8")


def test_slot_and_charge_are_one_round_trip_and_take_nothing_when_refused(
    make_limiter, clock, redis_client
):
    limiter = make_limiter(max_concurrency=1, slot_wait_timeout=0, clock=clock, sleep=clock.sleep)
    limiter.set_threshold("ci:9", ThresholdInfo(4, 60, 0))  # our budget: 2 an hour
    calls = []
    script = limiter._acquire_and_charge
    limiter._acquire_and_charge = lambda **kw: calls.append(kw) or script(**kw)
    with limiter.slot("ci:9", "Invoices"):
        assert len(calls) == 1  # slot + budget in one script call
        # No free slot: refused without charging the budget.
        with pytest.raises(AutotaskTransientError), limiter.slot("ci:9", "Invoices"):
            pass
    assert limiter.charge("ci:9") == 2  # only the request that got its slot was counted
    # Budget spent: refused without holding a slot.
    with pytest.raises(AutotaskBudgetExhausted), limiter.slot("ci:9", "Invoices"):
        pass
    assert limiter.in_flight("ci:9", "Invoices") == 0


def test_threshold_is_fetched_once_and_reused(make_client, fake, make_limiter):
    limiter = make_limiter()
    fake.api("GET", "ThresholdInformation", (200, {}, threshold(10_000)))
    fake.api("GET", r"Invoices/\d+", (200, {}, {"item": invoice(1)}))
    client = make_client(limiter=limiter)
    for _ in range(3):
        client.get_invoice(1)
    assert len(fake.calls("GET", "ThresholdInformation")) == 1
    assert limiter.threshold_known(client.db_key)


def test_redis_down_is_a_transient_error(make_client, fake):
    dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
    client = make_client(limiter=RedisLimiter(dead), max_attempts=1)
    with pytest.raises(AutotaskTransientError) as info:
        client.get_invoice(1)
    assert info.value.kind == "limiter"
    assert "Secret" not in str(info.value)


# --- how long the threshold is believed (limits.py docstring, issue 19) -----------------------


def test_threshold_outlives_hourly_syncs_and_is_reread_after_a_day(
    make_client, fake, make_limiter, clock, redis_client
):
    limiter = make_limiter(clock=clock)
    fake.api("GET", "ThresholdInformation", (200, {}, threshold(10_000)))
    fake.api("GET", r"Invoices/\d+", (200, {}, {"item": invoice(1)}))
    client = make_client(limiter=limiter)
    client.check_connection()  # Connect reads it
    assert redis_client.ttl(limiter._limit_key(client.db_key)) > 24 * 3600  # Redis keeps it
    for _hour in range(23):  # an hourly sync a day finds it cached
        clock.now += 3600
        make_client(limiter=limiter).get_invoice(1)
    assert len(fake.calls("GET", "ThresholdInformation")) == 1
    clock.now += 3600  # 24 h after the read: the next request reads it again, once
    make_client(limiter=limiter).get_invoice(1)
    make_client(limiter=limiter).get_invoice(1)
    assert len(fake.calls("GET", "ThresholdInformation")) == 2
    assert len(fake.calls("GET", "Invoices/1")) == 25


def test_threshold_is_reread_early_when_our_count_nears_the_budget(
    make_client, fake, make_limiter, clock
):
    limiter = make_limiter(budget_share=0.5, clock=clock)  # recheck at 80 %, once per 10 min
    answers = [(200, {}, threshold(20)), (200, {}, threshold(200))]  # the tenant's was raised
    fake.api("GET", "ThresholdInformation", lambda s, m: answers.pop(0))
    fake.api("GET", r"Invoices/\d+", (200, {}, {"item": invoice(1)}))
    client = make_client(limiter=limiter)
    client.check_connection()  # our budget: 10 an hour; 1 used
    for _ in range(7):  # 8 of 10: near, but read a moment ago, so not again
        client.get_invoice(1)
    assert len(fake.calls("GET", "ThresholdInformation")) == 1
    clock.now += 601  # the same rolling hour, 10 min after the read
    client.get_invoice(1)  # 9 of 10: marks the threshold for a re-read
    assert len(fake.calls("GET", "ThresholdInformation")) == 1
    for _ in range(10):  # the re-read (10 of 10) finds 100: these all go through
        client.get_invoice(1)
    assert len(fake.calls("GET", "ThresholdInformation")) == 2
    assert len(fake.calls("GET", "Invoices/1")) == 18
    assert limiter.usage([client.db_key])[client.db_key] == (20, 100)


def test_a_low_count_never_rereads_before_the_day(make_limiter, clock):
    limiter = make_limiter(budget_share=0.5, clock=clock)
    limiter.set_threshold("ci:11", ThresholdInfo(1_000, 60, 0))
    for _ in range(399):  # 399 of 500: under 80 %
        clock.now += 30
        limiter.charge("ci:11")
    assert limiter.threshold_known("ci:11")


def test_one_worker_rereads_a_due_threshold_the_others_keep_the_cached_budget(make_limiter, clock):
    limiter_a = make_limiter(budget_share=0.5, clock=clock)
    limiter_b = RedisLimiter(limiter_a.redis, key_prefix=limiter_a.key_prefix, clock=clock)
    limiter_a.set_threshold("ci:12", ThresholdInfo(10, 60, 0))
    assert limiter_a.threshold_known("ci:12") and limiter_b.threshold_known("ci:12")
    clock.now += 24 * 3600
    assert not limiter_b.threshold_known("ci:12")  # b reads ThresholdInformation
    assert limiter_a.threshold_known("ci:12")  # a goes on meanwhile, still under the budget
    assert [limiter_a.charge("ci:12") for _ in range(5)] == [1, 2, 3, 4, 5]
    with pytest.raises(AutotaskBudgetExhausted):
        limiter_a.charge("ci:12")
    limiter_b.set_threshold("ci:12", ThresholdInfo(100, 60, 0))
    assert limiter_a.threshold_known("ci:12") and limiter_b.threshold_known("ci:12")
    assert limiter_a.charge("ci:12") == 6
