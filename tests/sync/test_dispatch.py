"""CQ-8: two beats x 3 slots; beat down 3 slots -> 1 run per slot; 1 catch-up, not 3.

Beat (django-celery-beat's DatabaseScheduler) sends `sync.tick` every minute; the tick creates
each connected partner's scheduled runs when the partner's moment in the hour/day has come
(sync/dispatch.py). "Two beats" (autoscaling, `worker --beat` on two machines) send every tick
twice; a beat that was down sends nothing for a while, then ticks again.

- Two beats, every minute over 3 hours (frozen clock, time-machine): the task body `tick()` runs
  twice per minute, the second beat 25 s behind the first. Exactly one SyncRun per (partner,
  kind, slot), each enqueued once. Kills: dispatch without the slot key (`slot=""`: every tick
  of either beat would create a run).
- Two beats racing in the same instant (two threads): the first holds its transaction open after
  inserting; the second, whose snapshot cannot see those rows, passes the NOT EXISTS pre-check
  and waits on the unique index inside its INSERT: still one run per slot. Kills: dropping the
  `syncrun_one_per_slot` constraint.
- Beat down for 3 hourly slots, then one tick: exactly 1 run per partner for the current slot,
  none for the 3 missed ones, and no more for the rest of that slot. Kills: a catch-up that
  creates a run per missed slot.
- Set-based (issue 19): the tick is one statement in one transaction at 4 and at 40 partners;
  the SQL hash gives the offsets of `partner_offset`; paused, disconnected and freshly
  connected partners get no run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from integrations.models import AutotaskConnection
from sync import dispatch
from sync.models import SyncRun, SyncState

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
def test_two_beats_racing_in_the_same_instant_make_one_run_per_slot(partners, enqueued):
    """CQ-8, two beats in the same instant (threads, each with its own database connection).
    The first beat's statement has inserted its runs and its transaction is held open; the
    second beat's snapshot cannot see them, so it passes the NOT EXISTS pre-check and waits on
    the unique index inside its INSERT (seen in pg_stat_activity). When the first commits, the
    second creates nothing. Kills: no `syncrun_one_per_slot` constraint (the second beat would
    insert a duplicate of every run instead of waiting)."""
    moment = T0 + timedelta(minutes=59)
    first_inserted, release = threading.Event(), threading.Event()
    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def first_beat():
        try:
            with transaction.atomic():
                results["first"] = dispatch.dispatch_due_runs(now=moment)
                first_inserted.set()
                assert release.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
            first_inserted.set()
        finally:
            connections.close_all()

    def second_beat():
        try:
            results["second"] = dispatch.dispatch_due_runs(now=moment)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    first = threading.Thread(target=first_beat)
    first.start()
    assert first_inserted.wait(timeout=30)
    second = threading.Thread(target=second_beat)
    second.start()

    def second_waits_on_the_index() -> bool:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%WITH kinds(kind, period%%'"
            )
            return cursor.fetchone()[0] == 1

    deadline = time.monotonic() + 10
    while not second_waits_on_the_index():
        assert time.monotonic() < deadline, "the second beat never reached the INSERT"
        time.sleep(0.02)
    release.set()
    for t in (first, second):
        t.join(timeout=30)
    assert not any(t.is_alive() for t in (first, second)), "a beat hung"
    assert not errors, errors

    assert len(results["first"]) == 2 * len(partners)  # an hourly and a daily run each
    assert results["second"] == []
    for partner in partners:
        hourly, daily = scheduled(partner, HOURLY), scheduled(partner, DAILY)
        assert hourly == Counter(expected_slots(partner, HOURLY, [moment]))
        assert daily == Counter(expected_slots(partner, DAILY, [moment]))
        assert SyncState.objects.filter(partner=partner).count() == 1
    assert sorted(enqueued.calls) == sorted(SyncRun.objects.values_list("partner_id", "id"))


def connect_many(make_partner, n: int, start: int = 0) -> list:
    made = []
    for i in range(start, start + n):
        partner = make_partner(f"Fleet {i:05d}")
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


def tick_queries(moment) -> tuple[int, int]:
    from sync.tasks import tick

    with time_machine.travel(moment, tick=False), CaptureQueriesContext(connection) as ctx:
        created = tick()
    statements = [q["sql"] for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(statements) == 1, statements  # one statement in one transaction
    return len(ctx.captured_queries), created


@pytest.mark.django_db(transaction=True)
def test_tick_costs_the_same_queries_at_4_and_at_40_partners(make_partner, enqueued):
    """Issue 19: one statement creates every partner's due runs (and SyncState rows). Kills:
    a query per partner (the old exists() walk: 2 per partner and kind)."""
    few = connect_many(make_partner, 4)
    n_few, created_few = tick_queries(T0)
    assert created_few == 2 * len(few)  # a tick after days connected: both kinds due
    many = connect_many(make_partner, 36, start=4)
    n_many, created_many = tick_queries(T0)
    assert created_many == 2 * len(many)  # the 4 first have their runs for this slot already
    assert n_few == n_many == 3, (n_few, n_many)  # BEGIN, the statement, COMMIT
    n_idle, created_idle = tick_queries(T0)
    assert (n_idle, created_idle) == (n_few, 0)  # idempotent: a second tick creates nothing
    everyone = [*few, *many]
    assert SyncRun.objects.count() == 2 * len(everyone)
    assert SyncState.objects.filter(partner__in=everyone).count() == len(everyone)
    for partner in everyone:
        assert scheduled(partner, HOURLY) == Counter(expected_slots(partner, HOURLY, [T0]))
        assert scheduled(partner, DAILY) == Counter(expected_slots(partner, DAILY, [T0]))
    assert sorted(enqueued.calls) == sorted(SyncRun.objects.values_list("partner_id", "id"))


@pytest.mark.django_db
def test_offsets_in_sql_are_partner_offset():
    """The SQL hash gives `partner_offset`'s offsets (the slots stay those of before), for ids
    whose first hash byte has the top bit set too (unsigned)."""
    ids = [*range(1, 3001), 2**31 - 1, 2**40 + 7]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i, " + dispatch.OFFSET_SQL.format(id="i") + " FROM unnest(%s::bigint[]) i",
            [ids],
        )
        rows = dict(cursor.fetchall())
    for period in dispatch.PERIODS.values():
        seconds = int(period.total_seconds())
        wrong = [
            i
            for i in ids
            if timedelta(seconds=rows[i] % seconds) != dispatch.partner_offset(i, period)
        ]
        assert wrong == []
    assert max(rows.values()) >= 2**31  # unsigned: some hashes have the top bit set


@pytest.mark.django_db(transaction=True)
def test_paused_disconnected_and_freshly_connected_partners_get_no_run(partners, enqueued):
    """The WHERE of the statement: schedules paused, not connected, never connected, and a
    partner connected after its slot began get no run; the others do."""
    paused, disconnected, fresh = partners
    AutotaskConnection.objects.filter(partner=paused).update(schedules_paused=True)
    AutotaskConnection.objects.filter(partner=disconnected).update(
        status=AutotaskConnection.Status.DISCONNECTED
    )
    moment = T0 + timedelta(hours=5)
    AutotaskConnection.objects.filter(partner=fresh).update(connected_at=moment)
    created = dispatch.dispatch_due_runs(now=moment)
    assert created == []
    assert SyncRun.objects.count() == 0
    AutotaskConnection.objects.filter(partner=paused).update(schedules_paused=False)
    created = dispatch.dispatch_due_runs(now=moment)
    assert {r.partner_id for r in created} == {paused.id}
    assert len(created) == 2


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


def test_runs_are_enqueued_on_the_broker_with_their_ids(settings):
    """enqueue_runs publishes every run over one producer: one `sync.run_sync` message per run
    on the `sync` queue, ids only."""
    import base64
    import json

    import redis

    from config.celery import app

    app.control.purge()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    runs = [dispatch.Dispatched(partner_id=7, id=101), dispatch.Dispatched(partner_id=8, id=102)]
    dispatch.enqueue_runs(runs)
    try:
        messages = [json.loads(m) for m in broker.lrange("sync", 0, -1)]
        assert [m["headers"]["task"] for m in messages] == ["sync.run_sync"] * 2
        bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
        assert sorted(tuple(b[0]) for b in bodies) == [(7, 101), (8, 102)]
    finally:
        app.control.purge()
