"""Manual syncs (R10): cooldowns claimed by a conditional UPDATE, what gives a cooldown back,
ops runs, the wait behind a running sync, and the Preferences page."""

import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.admin.models import CHANGE, LogEntry

from integrations.models import AutotaskConnection
from partners.models import Partner, User
from sync import selectors, wording
from sync.models import SyncRun, SyncState
from sync.services.leases import RetryLater, _claim_partner, _claim_run, _release_partner
from sync.services.manual import (
    CooldownActive,
    ManualSyncUnavailable,
    manual_sync_start,
    sync_run_ops,
)
from sync.services.reaper import reap_stuck_runs
from sync.services.runs import MAX_ATTEMPTS, _finish, sync_run_create, sync_run_fail

from .manual_support import FakeRunSync, connect_directly

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NEW, UNPAID = SyncRun.Kind.NEW_DATA, SyncRun.Kind.UNPAID


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    fake = FakeRunSync()
    monkeypatch.setattr("sync.tasks.run_sync", fake)
    return fake


@pytest.fixture
def connected_a(partner_a):
    connect_directly(partner_a)
    return partner_a


def manual_runs(partner, kind=None):
    qs = SyncRun.objects.filter(partner=partner, trigger=SyncRun.Trigger.MANUAL)
    return qs.filter(kind=kind) if kind else qs


# --- cooldown boundaries (frozen clock) -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cooldown"), [(NEW, timedelta(hours=1)), (UNPAID, timedelta(hours=12))]
)
def test_cooldown_refuses_one_second_before_and_accepts_at_the_boundary(
    connected_a, user_a, kind, cooldown
):
    with time_machine.travel(T0, tick=False) as clock:
        first = manual_sync_start(partner=connected_a, kind=kind, user=user_a)
        assert first.created_at == T0

        clock.move_to(T0 + cooldown - timedelta(seconds=1))  # 59:59 / 11:59:59
        with pytest.raises(CooldownActive) as refused:
            manual_sync_start(partner=connected_a, kind=kind, user=user_a)
        assert refused.value.status == 429
        assert refused.value.headers == {"Retry-After": "1"}
        assert refused.value.extra["retry_after"] == 1
        assert refused.value.extra["available_at"] == (T0 + cooldown).isoformat()
        assert manual_runs(connected_a).count() == 1

        clock.move_to(T0 + cooldown)  # 60:00 / 12:00:00
        second = manual_sync_start(partner=connected_a, kind=kind, user=user_a)
        assert second.created_at == T0 + cooldown
    assert manual_runs(connected_a, kind).count() == 2
    state = SyncState.objects.get(partner=connected_a)
    assert getattr(state, selectors.ACTIONS[kind].state_field) == T0 + 2 * cooldown


def test_accepted_run_is_queued_manual_and_enqueued_after_commit(
    connected_a, user_a, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    assert (run.kind, run.trigger, run.status) == (NEW, "manual", "queued")
    assert run.requested_by == user_a
    assert enqueued.calls == [(connected_a.id, run.id)]


def test_refused_click_creates_no_run_and_enqueues_nothing(
    connected_a, user_a, enqueued, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    state_before = SyncState.objects.filter(partner=connected_a).values().get()
    runs_before = SyncRun.objects.count()
    with (
        time_machine.travel(T0 + timedelta(minutes=30), tick=False),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(CooldownActive),
    ):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    assert callbacks == []
    assert enqueued.calls == []
    assert SyncRun.objects.count() == runs_before
    assert SyncState.objects.filter(partner=connected_a).values().get() == state_before


def test_cooldowns_are_per_kind_and_per_partner(connected_a, partner_b, user_a, user_b):
    connect_directly(partner_b)
    with time_machine.travel(T0, tick=False):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        manual_sync_start(partner=connected_a, kind=UNPAID, user=user_a)  # other kind: free
        manual_sync_start(partner=partner_b, kind=NEW, user=user_b)  # other partner: free
        with pytest.raises(CooldownActive):
            manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    assert manual_runs(connected_a).count() == 2
    assert manual_runs(partner_b).count() == 1


def test_availability_text_is_in_the_partners_time_zone(connected_a, user_a):
    connected_a.time_zone = "America/New_York"
    connected_a.save()
    with time_machine.travel(T0, tick=False):  # 09:30 UTC = 04:30 in New York (EST)
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    avail = selectors.manual_sync_availability(partner=connected_a, now=T0 + timedelta(minutes=13))
    assert avail[NEW].text == "available today at 05:30 EST (in 47 min)"
    assert avail[NEW].local_at.utcoffset() == timedelta(hours=-5)
    assert avail[UNPAID].available and avail[UNPAID].text == ""
    assert wording.format_wait(3600) == "in 60 min"
    assert wording.format_wait(12 * 3600 - 1) == "in 12 h"
    assert wording.format_wait(3 * 3600 + 61) == "in 3 h 2 min"


# --- who has manual syncs ------------------------------------------------------------------


def test_partner_whose_primary_integration_is_not_autotask_is_refused(partner_c, user_c):
    connect_directly(partner_c)  # connected, but its primary integration is not Autotask
    for kind in (NEW, UNPAID):
        with pytest.raises(ManualSyncUnavailable) as refused:
            manual_sync_start(partner=partner_c, kind=kind, user=user_c)
        assert refused.value.status == 403
        assert "primary integration is Autotask" in refused.value.message
    assert SyncRun.objects.count() == 0
    assert not SyncState.objects.filter(partner=partner_c).exists()


def test_autotask_partner_without_active_connection_is_refused(partner_a, user_a):
    with pytest.raises(ManualSyncUnavailable, match="not connected"):
        manual_sync_start(partner=partner_a, kind=NEW, user=user_a)
    connect_directly(partner_a, status=AutotaskConnection.Status.DISCONNECTED)
    with pytest.raises(ManualSyncUnavailable, match="not connected"):
        manual_sync_start(partner=partner_a, kind=NEW, user=user_a)
    assert SyncRun.objects.count() == 0


def test_connection_needing_attention_still_allows_manual_sync(partner_a, user_a):
    connect_directly(partner_a, status=AutotaskConnection.Status.NEEDS_ATTENTION)
    assert manual_sync_start(partner=partner_a, kind=NEW, user=user_a).trigger == "manual"


# --- what burns the cooldown --------------------------------------------------------------


@pytest.mark.parametrize("error_kind", sorted(selectors.OUR_SIDE_ERRORS))
def test_run_failed_on_our_side_does_not_burn_the_cooldown(connected_a, user_a, error_kind):
    with time_machine.travel(T0, tick=False) as clock:
        first = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        sync_run_fail(first, error_kind=error_kind, message="ours")
        clock.move_to(T0 + timedelta(minutes=5))
        assert selectors.manual_sync_availability(partner=connected_a)[NEW].available
        second = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        assert second.pk != first.pk
        # The new run holds a fresh cooldown of its own.
        clock.move_to(T0 + timedelta(minutes=6))
        with pytest.raises(CooldownActive) as refused:
            manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    assert refused.value.extra["retry_after"] == 59 * 60
    assert manual_runs(connected_a).count() == 2


@pytest.mark.parametrize(
    "error_kind", ["auth:bad_secret", "auth:permission", "request", "response", "not_found"]
)
def test_run_failed_on_autotasks_side_burns_the_cooldown(connected_a, user_a, error_kind):
    with time_machine.travel(T0, tick=False):
        first = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    sync_run_fail(first, error_kind=error_kind, message="Autotask said no")
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        assert not selectors.manual_sync_availability(partner=connected_a)[NEW].available
        with pytest.raises(CooldownActive):
            manual_sync_start(partner=connected_a, kind=NEW, user=user_a)


def test_succeeded_and_partial_runs_burn_the_cooldown(connected_a, user_a):
    with time_machine.travel(T0, tick=False):
        new = manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        unpaid = manual_sync_start(partner=connected_a, kind=UNPAID, user=user_a)
    SyncRun.objects.filter(pk=new.pk).update(status=SyncRun.Status.SUCCEEDED)
    SyncRun.objects.filter(pk=unpaid.pk).update(status=SyncRun.Status.PARTIAL, failed=2)
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        for kind in (NEW, UNPAID):
            with pytest.raises(CooldownActive):
                manual_sync_start(partner=connected_a, kind=kind, user=user_a)


def test_worker_lost_by_the_reaper_gives_the_cooldown_back(connected_a, user_a):
    with time_machine.travel(T0, tick=False):
        run = manual_sync_start(partner=connected_a, kind=UNPAID, user=user_a)
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.RUNNING, attempts=MAX_ATTEMPTS, heartbeat_at=T0
    )
    with time_machine.travel(T0 + timedelta(minutes=20), tick=False):
        assert reap_stuck_runs() == {"requeued": 0, "failed": 1}
        run.refresh_from_db()
        assert (run.status, run.error_kind) == ("failed", "worker_lost")
        assert manual_sync_start(partner=connected_a, kind=UNPAID, user=user_a)


def test_real_run_with_unusable_stored_credentials_gives_the_cooldown_back(
    partner_a, user_a, connect, run_now, autotask_sandbox
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    run = manual_sync_start(partner=partner_a, kind=NEW, user=user_a)
    AutotaskConnection.objects.filter(pk=conn.pk).update(secret=None)
    run = run_now(run)
    assert (run.status, run.error_kind) == ("failed", "credentials")
    assert "Reconnect Autotask" in wording.plain_error(run)
    assert manual_sync_start(partner=partner_a, kind=NEW, user=user_a).pk != run.pk


def test_real_run_refused_by_autotask_burns_the_cooldown(
    partner_a, user_a, connect, run_now, autotask_sandbox
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    run = manual_sync_start(partner=partner_a, kind=NEW, user=user_a)
    conn.refresh_from_db()
    conn.secret = "not-the-secret"
    conn.save()
    run = run_now(run)
    assert (run.status, run.error_kind) == ("failed", "auth:bad_secret")
    assert "refused the API user's password" in wording.plain_error(run)
    with pytest.raises(CooldownActive):
        manual_sync_start(partner=partner_a, kind=NEW, user=user_a)


# --- ops ----------------------------------------------------------------------------------


@pytest.fixture
def staff(db):
    return User.objects.create_superuser(
        username="ops-staff", email="ops@paysync.test", password="pw-for-tests-1"
    )


def test_ops_run_skips_the_cooldown_and_leaves_it_unchanged(connected_a, user_a, staff):
    with time_machine.travel(T0, tick=False):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    before = SyncState.objects.filter(partner=connected_a).values().get()
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False):
        for kind in (NEW, NEW, UNPAID):
            run = sync_run_ops(partner=connected_a, kind=kind, user=staff)
            assert (run.trigger, run.requested_by, run.status) == ("ops", staff, "queued")
    assert SyncState.objects.filter(partner=connected_a).values().get() == before
    # Fetch Unpaid Invoices was never started by the partner: still available to them.
    assert selectors.manual_sync_availability(partner=connected_a)[UNPAID].available


def test_failed_ops_run_does_not_give_the_partners_cooldown_back(connected_a, user_a, staff):
    with time_machine.travel(T0, tick=False):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
        ops = sync_run_ops(partner=connected_a, kind=NEW, user=staff)
    sync_run_fail(ops, error_kind="worker_lost", message="lost")
    with time_machine.travel(T0 + timedelta(minutes=10), tick=False), pytest.raises(CooldownActive):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)


def test_ops_run_needs_an_active_connection(partner_a, staff):
    with pytest.raises(ManualSyncUnavailable):
        sync_run_ops(partner=partner_a, kind=NEW, user=staff)
    assert SyncRun.objects.count() == 0


def test_admin_actions_start_ops_runs_and_log_them(client, connected_a, partner_c, staff):
    client.force_login(staff)
    for action, kind in (
        ("run_fetch_new_data_now", NEW),
        ("run_fetch_unpaid_invoices_now", UNPAID),
    ):
        response = client.post(
            "/admin/partners/partner/",
            {"action": action, "_selected_action": [connected_a.pk, partner_c.pk]},
            follow=True,
        )
        assert response.status_code == 200
        run = SyncRun.objects.get(partner=connected_a, kind=kind)
        assert (run.trigger, run.requested_by) == ("ops", staff)
        entry = LogEntry.objects.filter(object_id=str(connected_a.pk)).latest("id")
        assert (entry.action_flag, entry.user) == (CHANGE, staff)
        assert f"run #{run.pk}" in entry.get_change_message()
        body = response.content.decode()
        assert f"started (run #{run.pk})" in body
        assert "Charlie Tech: Autotask is not connected" in body
    assert not SyncRun.objects.filter(partner=partner_c).exists()
    assert SyncState.objects.get(partner=connected_a).next_fetch_new_data_at is None


# --- never alongside another sync of the partner --------------------------------------------


def test_manual_sync_waits_for_a_running_scheduled_sync(
    partner_a, user_a, connect, run_now, autotask_sandbox
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    scheduled = sync_run_create(
        partner=partner_a, kind=NEW, trigger=SyncRun.Trigger.SCHEDULE, slot="h-test"
    )
    token = uuid.uuid4()
    assert _claim_partner(partner_a, scheduled, token)  # the scheduled run is working
    assert _claim_run(scheduled, token)
    manual_run = manual_sync_start(partner=partner_a, kind=NEW, user=user_a)
    requests_before = len(autotask_sandbox.db.requests())

    with pytest.raises(RetryLater):
        run_now(manual_run)
    manual_run.refresh_from_db()
    assert (manual_run.status, manual_run.started_at, manual_run.attempts) == ("queued", None, 0)
    assert len(autotask_sandbox.db.requests()) == requests_before  # not a single request
    assert selectors.waiting_for(manual_run) == scheduled
    assert selectors.current_run(partner_a) == scheduled

    _finish(scheduled.id, token, status=SyncRun.Status.SUCCEEDED)
    _release_partner(partner_a, token)
    manual_run = run_now(manual_run)
    assert manual_run.status == SyncRun.Status.SUCCEEDED, manual_run.error_message
    assert manual_run.started_at >= SyncRun.objects.get(pk=scheduled.pk).finished_at


# --- the Preferences page -------------------------------------------------------------------


def test_preferences_page_shows_both_actions_with_what_they_do(client_a, connected_a):
    body = client_a.get("/preferences/").content.decode()
    assert 'id="fetch-new_data"' in body and 'id="fetch-unpaid"' in body
    assert "created or changed, in Autotask within the last hour" in body
    assert "unpaid invoices created in the last 30 days" in body
    assert "(amount, outstanding amount, due date, status) is corrected" in body
    assert "At most once an hour" in body and "At most once every 12 hours" in body
    assert " disabled" not in body.split('id="fetch-new_data"')[1].split(">")[0]


def test_preferences_page_shows_disabled_button_with_local_time(client_a, connected_a, user_a):
    Partner.objects.filter(pk=connected_a.pk).update(time_zone="Europe/Berlin")
    with time_machine.travel(T0, tick=False):
        manual_sync_start(partner=connected_a, kind=NEW, user=user_a)
    with time_machine.travel(T0 + timedelta(minutes=15), tick=False):
        body = client_a.get("/preferences/").content.decode()
    button = body.split('id="fetch-new_data"')[1].split(">")[0]
    assert "disabled" in button
    # 10:30 UTC + 1 h, in Berlin (CET, UTC+1) = 11:30
    local = (T0 + timedelta(hours=1)).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert f"available today at {local:%H:%M} CET (in 45 min)" in body
    assert "available today at 11:30 CET (in 45 min)" in body


def test_preferences_page_for_other_partners_has_no_actions(client, user_c):
    client.force_login(user_c)
    body = client.get("/preferences/").content.decode()
    assert "primary integration is Autotask" in body
    assert "fetch-new_data" not in body and "fetch-unpaid" not in body


def test_preferences_page_lists_the_last_20_runs_with_links(client_a, connected_a):
    runs = [
        SyncRun.objects.create(partner=connected_a, kind=kind, trigger=trigger)
        for kind, trigger in [(NEW, "schedule"), (UNPAID, "manual"), ("initial", "connect")] * 8
    ]
    body = client_a.get("/preferences/").content.decode()
    table = body.split('id="recent-runs"')[1].split("</table>")[0]
    assert table.count("<tr>") == 21  # header + 20
    for run in runs[-20:]:
        assert f'href="/sync-history/{run.pk}/"' in table
    for run in runs[:4]:
        assert f'href="/sync-history/{run.pk}/"' not in table
    assert "Schedule" in table and "Manual" in table and "Connect" in table
