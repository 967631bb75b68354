"""A sync that meets Autotask's hourly threshold answered as a 500 with the threshold text
(issue 16; API.md §4: the status is UNVERIFIED; the sandbox's `threshold_status` switch) is put
back in the queue, never failed: the run waits (at least the server's Retry-After), keeps its
cursor and goes on once the hour has room again."""

import pytest

from integrations import clients
from integrations.models import AutotaskConnection
from sync.models import SyncRun
from sync.services.leases import RetryLater
from sync.services.runs import REQUEUE_WAIT

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_sleep(monkeypatch):
    """The client's retry backoffs are recorded, not slept."""
    delays: list[float] = []
    original = clients.build_client

    def build(connection, **options):
        client = original(connection, **options)
        client.retry.sleep = delays.append
        return client

    monkeypatch.setattr(clients, "build_client", build)
    return delays


@pytest.fixture
def synced(partner_a, connect, run_now, autotask_sandbox):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == SyncRun.Status.SUCCEEDED
    return conn


def test_sync_meeting_threshold_500_is_requeued_not_failed(
    partner_a, synced, run_now, new_run, autotask_sandbox, no_sleep
):
    db = autotask_sandbox.db
    db.set_switches(threshold_status=500, threshold=1)  # the first sync spent the hour
    db.reset_log()
    run = new_run(partner_a, SyncRun.Kind.UNPAID, SyncRun.Trigger.OPS)
    with pytest.raises(RetryLater) as info:
        run_now(run)
    assert info.value.countdown >= REQUEUE_WAIT
    assert no_sleep  # the client retried before giving the run back
    run.refresh_from_db()
    assert (run.status, run.error_kind, run.attempts) == ("queued", "throttled", 0)
    assert run.error_message.startswith("will retry:") and "threshold" in run.error_message
    assert {r["status"] for r in db.requests()} == {500}
    connection = AutotaskConnection.objects.get(partner=partner_a)
    assert connection.status == AutotaskConnection.Status.CONNECTED  # not "needs attention"

    db.set_switches(threshold=10_000)
    db.reset_counters()  # the rolling hour has room again
    done = run_now(run)
    assert done.status == SyncRun.Status.SUCCEEDED, done.error_message


def test_sync_waits_out_the_threshold_retry_after(
    partner_a, synced, run_now, new_run, autotask_sandbox, no_sleep
):
    """A Retry-After too long for the client to sleep through is raised at once; the run is
    requeued no sooner than it says (was: 30 s, then throttled again)."""
    db = autotask_sandbox.db
    db.set_switches(threshold_status=500, threshold=1, threshold_retry_after=True)
    run = new_run(partner_a, SyncRun.Kind.NEW_DATA, SyncRun.Trigger.OPS)
    with pytest.raises(RetryLater) as info:
        run_now(run)
    assert no_sleep == []  # nothing slept through in the worker
    assert info.value.countdown > 600  # the hour's first request leaves the window later
    run.refresh_from_db()
    assert (run.status, run.error_kind) == ("queued", "throttled")
