"""Issue 16 item 6: a run queued behind another run of the same partner starts when the lease
is released, not after its retry countdown (BUSY_COUNTDOWN + jitter, ~36 s). No timings: the
test asserts the enqueue that happens on release."""

from __future__ import annotations

import pytest

from sync.models import SyncRun
from sync.services.leases import RetryLater
from sync.services.runs import execute_run, sync_run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    from sync.tasks import run_sync

    calls: list[tuple] = []
    monkeypatch.setattr(run_sync, "delay", lambda *args: calls.append(args))
    return calls


def _queue(partner, kind=SyncRun.Kind.NEW_DATA, **fields):
    run = sync_run_create(partner=partner, kind=kind, trigger=SyncRun.Trigger.MANUAL)
    if fields:
        SyncRun.objects.filter(id=run.id).update(**fields)
    return run


def test_release_enqueues_the_oldest_waiting_run_after_commit(
    partner_a, connect, sent, django_capture_on_commit_callbacks
):
    first = connect(partner_a).first_run
    older = _queue(partner_a)
    _queue(partner_a, kind=SyncRun.Kind.UNPAID)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        done = execute_run(partner=partner_a, run_id=first.id)
    assert done.status == SyncRun.Status.SUCCEEDED
    assert sent == []  # nothing before commit
    for callback in callbacks:
        callback()
    # The oldest waiting run is delivered now (the PDF run the initial sync queued enqueues
    # itself); exactly one wake-up.
    woken = [args for args in sent if args == (partner_a.id, older.id)]
    assert woken == [(partner_a.id, older.id)]
    assert not any(
        run_id != older.id and SyncRun.objects.get(id=run_id).kind != SyncRun.Kind.PDF
        for _, run_id in sent
    )


def test_a_politely_requeued_run_keeps_its_countdown_and_no_waiter_sends_nothing(
    partner_a, connect, sent, django_capture_on_commit_callbacks
):
    first = connect(partner_a).first_run
    _queue(partner_a, error_kind="throttled", error_message="will retry: throttled")
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        execute_run(partner=partner_a, run_id=first.id)
    assert {SyncRun.objects.get(id=run_id).kind for _, run_id in sent} <= {SyncRun.Kind.PDF}


def test_the_waiting_run_still_waits_while_the_lease_is_held(partner_a, connect, sent):
    """One sync per partner: the woken run finds the lease held and retries (the fallback)."""
    from sync.services.leases import _claim_partner

    first = connect(partner_a).first_run
    waiting = _queue(partner_a)
    assert _claim_partner(partner_a, first, "00000000-0000-0000-0000-000000000001")
    SyncRun.objects.filter(id=first.id).update(status=SyncRun.Status.RUNNING)
    with pytest.raises(RetryLater):
        execute_run(partner=partner_a, run_id=waiting.id)
