"""`manage.py sync_now PARTNER --kind new_data|unpaid` (ops/management/commands/sync_now.py): one
sync of a partner run now in the calling process, trigger ops, no cooldown, exit 0 only when
the run succeeded; against the Autotask sandbox over real HTTP."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import base as management_base
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from integrations import clients
from integrations.connect import autotask_disconnect
from ops.management.commands import sync_now
from sync import tasks as sync_tasks
from sync.models import SyncRun, SyncState

pytestmark = pytest.mark.django_db


@pytest.fixture
def connected_a(partner_a, connect, run_now):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == SyncRun.Status.SUCCEEDED
    return conn


@pytest.fixture
def sent_tasks(monkeypatch):
    """sync.run_sync messages sent (none may be sent for the command's own run)."""
    sent: list[tuple] = []
    monkeypatch.setattr(sync_tasks.run_sync, "delay", lambda *a, **k: sent.append(a))
    monkeypatch.setattr(sync_tasks.run_sync, "apply_async", lambda *a, **k: sent.append(a))
    return sent


@pytest.fixture
def no_sleep(monkeypatch):
    """Neither the client's retry backoffs nor the command's waits are slept."""
    slept: list[float] = []
    original = clients.build_client

    def build(connection, **options):
        client = original(connection, **options)
        client.retry.sleep = lambda seconds: None
        return client

    monkeypatch.setattr(clients, "build_client", build)
    monkeypatch.setattr(sync_now, "sleep", slept.append)
    return slept


def sync_now_cmd(*args):
    out, err = StringIO(), StringIO()
    call_command("sync_now", *args, stdout=out, stderr=err)
    return out.getvalue()


def latest_run(partner):
    return SyncRun.objects.filter(partner=partner).exclude(kind=SyncRun.Kind.PDF).latest("id")


@pytest.mark.parametrize("kind", ["new_data", "unpaid"])
def test_success_exits_zero_runs_here_with_trigger_ops(
    kind, partner_a, connected_a, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        out = sync_now_cmd(str(partner_a.pk), "--kind", kind)
    run = latest_run(partner_a)
    assert (run.kind, run.trigger, run.status) == (kind, "ops", "succeeded")
    assert run.requested_by is None
    assert f"Run {run.pk}:" in out and f"Run {run.pk}: succeeded" in out
    assert all(args[1] != run.pk for args in sent_tasks)  # executed here, no task for it


def test_partner_by_exact_name(partner_a, connected_a):
    out = sync_now_cmd("Alpha IT", "--kind", "unpaid")
    run = latest_run(partner_a)
    assert (run.trigger, run.status) == ("ops", "succeeded")
    assert f"partner {partner_a.pk} (Alpha IT)" in out


def test_no_cooldown_is_checked_or_changed(partner_a, connected_a):
    later = timezone.now() + timedelta(hours=5)
    SyncState.objects.filter(partner=partner_a).update(
        next_fetch_new_data_at=later, next_fetch_unpaid_at=later
    )  # both manual syncs cooling down
    before = SyncState.objects.filter(partner=partner_a).values(
        "next_fetch_new_data_at", "next_fetch_unpaid_at"
    )[0]
    sync_now_cmd(str(partner_a.pk), "--kind", "new_data")
    sync_now_cmd(str(partner_a.pk), "--kind", "unpaid")
    after = SyncState.objects.filter(partner=partner_a).values(
        "next_fetch_new_data_at", "next_fetch_unpaid_at"
    )[0]
    assert after == before
    assert SyncRun.objects.filter(partner=partner_a, trigger="ops", status="succeeded").count() == 2


def test_unknown_partner(partner_a):
    with pytest.raises(CommandError, match="No partner with id or name 'Nobody'"):
        sync_now_cmd("Nobody", "--kind", "unpaid")
    with pytest.raises(CommandError, match="No partner with id or name '999999'"):
        sync_now_cmd("999999", "--kind", "unpaid")
    assert not SyncRun.objects.exists()


def test_ambiguous_name(make_partner):
    first = make_partner("Twin IT", slug="twin-it-1")
    second = make_partner("Twin IT", slug="twin-it-2")
    with pytest.raises(CommandError) as info:
        sync_now_cmd("Twin IT", "--kind", "unpaid")
    assert "2 partners are named 'Twin IT'" in str(info.value)
    assert f"ids {first.pk}, {second.pk}" in str(info.value)


def test_disconnected_partner_exits_non_zero(partner_a, connected_a, monkeypatch, capsys):
    autotask_disconnect(connection=connected_a, actor=None)
    # run_from_argv (what manage.py calls) closes the connections at the end: keep the test's
    monkeypatch.setattr(management_base.connections, "close_all", lambda: None)
    runs_before = SyncRun.objects.filter(partner=partner_a).count()
    with pytest.raises(SystemExit) as info:
        sync_now.Command().run_from_argv(
            ["manage.py", "sync_now", str(partner_a.pk), "--kind", "new_data"]
        )
    assert info.value.code == 1
    assert "not_connected: Autotask is not connected" in capsys.readouterr().err
    assert SyncRun.objects.filter(partner=partner_a).count() == runs_before


def test_partner_never_connected_exits_non_zero(partner_b):
    with pytest.raises(CommandError, match="not_connected") as info:
        sync_now_cmd(str(partner_b.pk), "--kind", "unpaid")
    assert info.value.returncode == 1


def test_failed_run_exits_non_zero_with_its_error(partner_a, connected_a, autotask_sandbox):
    autotask_sandbox.db.set_switches(permission_denied=True)
    with pytest.raises(CommandError) as info:
        sync_now_cmd(str(partner_a.pk), "--kind", "unpaid")
    run = latest_run(partner_a)
    assert (run.trigger, run.status, run.error_kind) == ("ops", "failed", "auth:permission")
    assert info.value.returncode == 1
    assert f"Run {run.pk} failed: auth:permission:" in str(info.value)


def test_throttled_run_waits_here_then_succeeds(
    partner_a, connected_a, autotask_sandbox, no_sleep, sent_tasks, monkeypatch
):
    db = autotask_sandbox.db
    db.set_switches(threshold_status=500, threshold=1)  # the first sync spent the hour
    no_sleep_hook = sync_now.sleep

    def wait(seconds):  # the hour frees up while the command waits
        no_sleep_hook(seconds)
        db.set_switches(threshold=10_000)
        db.reset_counters()

    monkeypatch.setattr(sync_now, "sleep", wait)
    out = sync_now_cmd(str(partner_a.pk), "--kind", "unpaid")
    run = latest_run(partner_a)
    assert run.status == "succeeded" and run.trigger == "ops"
    assert len(no_sleep) == 1 and no_sleep[0] >= 30
    assert "waiting" in out
    assert sent_tasks == []


def test_still_queued_after_max_wait_exits_3(partner_a, connected_a, autotask_sandbox, no_sleep):
    autotask_sandbox.db.set_switches(threshold_status=500, threshold=1)
    with pytest.raises(CommandError) as info:
        sync_now_cmd(str(partner_a.pk), "--kind", "unpaid", "--max-wait", "60")
    assert info.value.returncode == 3
    run = latest_run(partner_a)
    assert (run.status, run.error_kind) == ("queued", "throttled")
    assert sum(no_sleep) == 60
