"""Issue 17 item 5: after the partner fixed the connection, "Retry now" (a manual sync) is not
held back by the cooldown of a run that failed before the fix; still one run per click storm.
Also the wording of the time a manual sync is available again ("tomorrow at 01:18 CET")."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from integrations.models import AutotaskConnection
from sync import selectors
from sync.models import SyncRun
from sync.services.manual import CooldownActive, manual_sync_start
from sync.services.runs import sync_run_fail

from .manual_support import FakeRunSync, connect_directly
from .test_manual_api import NEW_URL, click_concurrently

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NEW = SyncRun.Kind.NEW_DATA


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    fake = FakeRunSync()
    monkeypatch.setattr("sync.tasks.run_sync", fake)
    return fake


@pytest.fixture
def connected_a(partner_a):
    connect_directly(partner_a)
    return partner_a


def _fail_and_fix(partner, user, *, fix_at):
    with time_machine.travel(T0, tick=False):
        first = manual_sync_start(partner=partner, kind=NEW, user=user)
    sync_run_fail(first, error_kind="auth:permission", message="HTTP 403")
    conn = AutotaskConnection.objects.get(partner=partner)
    conn.record_error("permission", "HTTP 403", needs_attention=True)
    with time_machine.travel(fix_at, tick=False):
        conn.mark_restored()
        conn.save()
    return first


@pytest.mark.django_db
def test_without_a_fix_the_failed_run_keeps_its_cooldown(connected_a, user_a):
    with time_machine.travel(T0, tick=False):
        first = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    sync_run_fail(first, error_kind="auth:permission", message="HTTP 403")
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        assert not selectors.manual_sync_availability(partner=connected_a)[NEW].available
        with pytest.raises(CooldownActive):
            manual_sync_start(partner=connected_a, kind=NEW, user=user_a)


@pytest.mark.django_db
def test_after_the_fix_retry_is_available_and_takes_the_cooldown_again(connected_a, user_a):
    _fail_and_fix(connected_a, user_a, fix_at=T0 + timedelta(minutes=5))
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        assert selectors.manual_sync_availability(partner=connected_a)[NEW].available
        retry = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        with pytest.raises(CooldownActive):  # the retry holds the cooldown now
            manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    assert retry.status == SyncRun.Status.QUEUED


@pytest.mark.django_db
def test_a_fix_before_the_failed_run_started_gives_nothing_back(connected_a, user_a):
    conn = AutotaskConnection.objects.get(partner=connected_a)
    with time_machine.travel(T0 - timedelta(minutes=5), tick=False):
        conn.mark_restored()
        conn.save()
    with time_machine.travel(T0, tick=False):
        first = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    sync_run_fail(first, error_kind="auth:permission", message="HTTP 403")
    with (
        time_machine.travel(T0 + timedelta(minutes=10), tick=False),
        pytest.raises(CooldownActive),
    ):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)


@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_retries_after_a_fix_make_exactly_one_run(
    connected_a, user_a, enqueued
):
    first = _fail_and_fix(connected_a, user_a, fix_at=datetime.now(UTC))
    statuses = click_concurrently(user_a, NEW_URL)
    assert statuses == [202] + [429] * 19
    assert SyncRun.objects.filter(partner=connected_a).exclude(pk=first.pk).count() == 1


@pytest.mark.django_db
def test_retry_now_button_starts_the_failed_kind_past_the_cooldown_after_a_fix(
    client_a, connected_a, user_a
):
    # At a fixed time of day: run at 23:07 on the wall clock, the new cooldown ended
    # "tomorrow" and the wording checked below was not the one expected (a CI failure).
    fix_at = T0 + timedelta(minutes=10)  # inside the failed run's cooldown
    first = _fail_and_fix(connected_a, user_a, fix_at=fix_at)
    with time_machine.travel(fix_at + timedelta(minutes=1), tick=False):
        response = client_a.post(reverse("integrations:autotask-retry"))
        retry = SyncRun.objects.exclude(pk=first.pk).get(partner=connected_a)
        assert response["Location"] == reverse("sync:run-detail", args=[retry.pk])
        assert (retry.kind, retry.trigger) == (NEW, SyncRun.Trigger.MANUAL)
        # A second click inside the new cooldown starts nothing and says when.
        response = client_a.post(reverse("integrations:autotask-retry"), follow=True)
    assert "available today at 10:41 UTC (in 60 min)" in response.content.decode()
    assert SyncRun.objects.filter(partner=connected_a).count() == 2


@pytest.mark.django_db
def test_retry_now_after_a_failure_on_our_side_is_not_held_back(client_a, connected_a, user_a):
    first = manual_sync_start(partner=connected_a, kind=SyncRun.Kind.UNPAID, user=user_a)
    sync_run_fail(first, error_kind="worker_lost", message="lost")
    client_a.post(reverse("integrations:autotask-retry"))
    retry = SyncRun.objects.exclude(pk=first.pk).get(partner=connected_a)
    assert retry.kind == SyncRun.Kind.UNPAID  # the kind that failed


@pytest.mark.django_db
def test_available_text_says_tomorrow_with_the_zone(connected_a, user_a):
    connected_a.time_zone = "Europe/Berlin"
    connected_a.save()
    late = datetime(2026, 3, 2, 22, 40, tzinfo=UTC)  # 23:40 in Berlin
    with time_machine.travel(late, tick=False):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        avail = selectors.manual_sync_availability(partner=connected_a)[NEW]
    assert avail.text == "available tomorrow at 00:40 CET (in 60 min)"
    assert avail.when_text == "tomorrow at 00:40 CET"
