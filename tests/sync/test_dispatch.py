"""CQ-8: two beats x 3 slots; beat down 3 slots -> 1 run per slot; 1 catch-up, not 3.

Beat (django-celery-beat's DatabaseScheduler) sends `sync.tick` every minute; the tick creates
each connected partner's scheduled runs when the partner's moment in the hour/day has come
(sync/dispatch.py). "Two beats" (autoscaling, `worker --beat` on two machines) send every tick
twice; a beat that was down sends nothing for a while, then ticks again.

- Two beats, every minute over 3 hours (frozen clock, time-machine): the task body `tick()` runs
  twice per minute, the second beat 25 s behind the first. Exactly one SyncRun per (partner,
  kind, slot), each enqueued once. Kills: dispatch without the slot key (`slot=""`: every tick
  of either beat would create a run).
- Two beats racing in the same instant (two threads, held together just before the INSERT so
  both have passed the `exists()` pre-check): still one run per slot, from the database's
  unique key (partner, kind, slot). Kills: dropping the `syncrun_one_per_slot` constraint (the
  pre-check alone lets both beats create a run).
- Beat down for 3 hourly slots, then one tick: exactly 1 run per partner for the current slot,
  none for the 3 missed ones, and no more for the rest of that slot. Kills: a catch-up that
  creates a run per missed slot.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connections
from django_celery_beat.models import PeriodicTask

from integrations.models import AutotaskConnection
from sync import dispatch
from sync.models import SyncRun

from .manual_support import FakeRunSync

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, midnight UTC
HOURLY, DAILY = SyncRun.Kind.NEW_DATA, SyncRun.Kind.UNPAID
HOUR = timedelta(hours=1)


@pytest.fixture
def enqueued(monkeypatch):
    """run_sync.delay stand-in: which runs were enqueued (after commit), without a broker."""
    fake = FakeRunSync()
    monkeypatch.setattr("sync.tasks.run_sync", fake)
    return fake


@pytest.fixture
def partners(make_partner):
    """Three connected partners (different offsets in the hour), connected days before T0."""
    made = []
    for name in ("Alpha IT", "Bravo Networks", "Charlie Tech"):
        partner = make_partner(name)
        AutotaskConnection.objects.create(
            partner=partner,
            account_email="ops@example.test",
            username="api-user",
            secret="api-secret",
            username_last4="user",
            connected_at=T0 - timedelta(days=3),
        )
        made.append(partner)
    return made


def expected_slots(partner, kind, moments) -> set[str]:
    """The partner's slots the given tick moments fall in, computed here without dispatch.py:
    the partner's hour (day) starts `offset` after the clock's."""
    period = dispatch.PERIODS[kind]
    offset = dispatch.partner_offset(partner.id, period)
    fmt = "h%Y%m%d%H" if period == HOUR else "d%Y%m%d"
    return {(m - offset).strftime(fmt) for m in moments}


def scheduled(partner, kind) -> Counter:
    return Counter(
        SyncRun.objects.filter(
            partner=partner, kind=kind, trigger=SyncRun.Trigger.SCHEDULE
        ).values_list("slot", flat=True)
    )


def two_beats(clock, moments):
    """Both beats send `sync.tick` at every moment, the second 25 s after the first. The task
    body runs here (no broker, no eager mode: the task itself is what a worker would run)."""
    from sync.tasks import tick

    created = 0
    for moment in moments:
        clock.move_to(moment)
        created += tick()
        clock.move_to(moment + timedelta(seconds=25))
        created += tick()
    return created


def minutes(start, end):
    n = int((end - start).total_seconds() // 60)
    return [start + timedelta(minutes=i) for i in range(n)]


@pytest.mark.django_db
def test_beat_schedule_sends_one_tick_a_minute():
    """The migration's beat schedule: one enabled `sync.tick` every 60 s and the reaper; what
    the tests below assume of beat."""
    ticks = PeriodicTask.objects.filter(task="sync.tick")
    assert ticks.count() == 1
    tick = ticks.get()
    assert tick.enabled and tick.interval.every == 60 and tick.interval.period == "seconds"
    assert PeriodicTask.objects.filter(task="sync.reap_stuck_runs", enabled=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_beats_over_three_slots_make_one_run_per_slot(partners, enqueued):
    """CQ-8, two beats x 3 slots. Kills: dispatch without the slot key."""
    moments = minutes(T0, T0 + 3 * HOUR)
    with time_machine.travel(T0, tick=False) as clock:
        created = two_beats(clock, moments)

    total = 0
    for partner in partners:
        hourly, daily = scheduled(partner, HOURLY), scheduled(partner, DAILY)
        assert set(hourly.values()) == {1}, hourly
        assert set(daily.values()) == {1}, daily
        assert set(hourly) == expected_slots(partner, HOURLY, moments)
        assert set(daily) == expected_slots(partner, DAILY, moments)
        # 3 hours of ticks touch 3 of the partner's hourly slots, 4 when its offset is not 0
        # (the first and the last only partly).
        assert 3 <= len(hourly) <= 4
        total += len(hourly) + len(daily)
    assert created == total == SyncRun.objects.count()
    runs = set(SyncRun.objects.values_list("partner_id", "id"))
    assert sorted(enqueued.calls) == sorted(runs)  # each run enqueued exactly once


@pytest.mark.django_db(transaction=True)
def test_two_beats_racing_in_the_same_instant_make_one_run_per_slot(
    partners, enqueued, monkeypatch
):
    """CQ-8, two beats in the same instant (threads, each with its own database connection).
    Both are held just before the INSERT of each run until the other arrives, so both have
    passed dispatch's `exists()` pre-check: only the unique key (partner, kind, slot) can keep
    the second run out. Kills: no `syncrun_one_per_slot` constraint."""
    real_create = dispatch.sync_run_create
    barriers: dict[tuple, threading.Barrier] = {}
    lock = threading.Lock()
    waits_timed_out = []

    def held_create(*, partner, kind, trigger, slot="", **kwargs):
        with lock:
            barrier = barriers.setdefault((partner.id, kind, slot), threading.Barrier(2))
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            waits_timed_out.append((partner.id, kind, slot))  # the other beat never came
        return real_create(partner=partner, kind=kind, trigger=trigger, slot=slot, **kwargs)

    monkeypatch.setattr(dispatch, "sync_run_create", held_create)

    moments = [T0 + timedelta(minutes=59 * i) for i in range(4)]  # 0, 59, 118, 177 min: 3 h
    errors: list[BaseException] = []
    created: list[int] = []

    def beat(now):
        try:
            created.append(len(dispatch.dispatch_due_runs(now=now)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's connection

    for moment in moments:
        barriers.clear()
        threads = [threading.Thread(target=beat, args=(moment,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a beat hung"
    assert not errors, errors
    assert not waits_timed_out, waits_timed_out  # the race really happened for every run

    for partner in partners:
        hourly, daily = scheduled(partner, HOURLY), scheduled(partner, DAILY)
        assert set(hourly.values()) == {1}, hourly
        assert set(daily.values()) == {1}, daily
        assert set(hourly) == expected_slots(partner, HOURLY, moments)
    assert sum(created) == SyncRun.objects.count()
    assert sorted(enqueued.calls) == sorted(SyncRun.objects.values_list("partner_id", "id"))


@pytest.mark.django_db(transaction=True)
def test_beat_down_for_three_slots_catches_up_with_one_run(partners, enqueued):
    """CQ-8, beat down 3 slots. Kills: a catch-up run per missed slot."""
    first_hour = minutes(T0, T0 + HOUR)
    back_at = T0 + 4 * HOUR + timedelta(minutes=1)  # nothing sent for T0+1h .. T0+4h
    with time_machine.travel(T0, tick=False) as clock:
        two_beats(clock, first_hour)
        before = {p.id: scheduled(p, HOURLY) for p in partners}
        before_daily = {p.id: scheduled(p, DAILY) for p in partners}

        clock.move_to(back_at)
        from sync.tasks import tick

        caught_up = tick()
        after = {p.id: scheduled(p, HOURLY) for p in partners}
        new_runs = {p.id: set(after[p.id]) - set(before[p.id]) for p in partners}

        # 20 more minutes of both beats: nothing more for the slot caught up.
        later = minutes(back_at + timedelta(minutes=1), back_at + timedelta(minutes=20))
        two_beats(clock, later)

    for partner in partners:
        missed = expected_slots(partner, HOURLY, minutes(T0 + HOUR, back_at)) - set(
            before[partner.id]
        )
        current = expected_slots(partner, HOURLY, [back_at])
        assert len(missed - current) >= 2  # the outage spanned slots that got no tick at all
        assert new_runs[partner.id] == current, (new_runs[partner.id], missed)  # 1, not 3
        final = scheduled(partner, HOURLY)
        assert set(final.values()) == {1}
        assert not (missed - current) & set(final)  # no run for a missed slot, ever
        daily = scheduled(partner, DAILY)
        assert set(daily.values()) == {1}
        # A daily run only if the partner's day turned meanwhile: for its current day.
        assert set(daily) - set(before_daily[partner.id]) == expected_slots(
            partner, DAILY, [back_at, *later]
        ) - set(before_daily[partner.id])
    # One tick after the outage: one hourly run per partner, plus a daily run for a partner
    # whose day turned during the outage.
    new_daily = sum(
        len(expected_slots(p, DAILY, [back_at]) - set(before_daily[p.id])) for p in partners
    )
    assert caught_up == len(partners) + new_daily
    assert sorted(enqueued.calls) == sorted(SyncRun.objects.values_list("partner_id", "id"))
