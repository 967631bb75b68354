"""The reaper (beat: `sync.reap_stuck_runs` every 5 minutes): runs whose worker died are
requeued, or failed after MAX_ATTEMPTS lost workers (sync/services/runs.py); queued runs whose
task the broker lost are enqueued again."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..models import SyncRun
from . import leases
from .runs import MAX_ATTEMPTS, worker_lost_message

# The reaper re-enqueues a queued run whose task the broker lost when it is this old.
QUEUED_LOST_AFTER = timedelta(minutes=5)


def reap_stuck_runs(*, now=None) -> dict:
    """Runs whose worker died: requeued (attempts < MAX_ATTEMPTS) or failed. Queued runs whose
    task the broker lost are enqueued again. Returns counts for the log and metrics."""
    from ..tasks import run_sync  # cycle: sync.tasks imports this module

    now = now or timezone.now()
    stale = now - leases.LEASE
    requeued = failed = 0
    stuck = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    )
    for run in stuck:
        if run.attempts >= MAX_ATTEMPTS:
            failed += SyncRun.objects.filter(
                id=run.id, status=SyncRun.Status.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(
                status=SyncRun.Status.FAILED,
                owner=None,  # fences a zombie owner: it can no longer commit or finish
                finished_at=now,
                error_kind="worker_lost",
                error_message=worker_lost_message(run.attempts),
            )
        else:
            if SyncRun.objects.filter(
                id=run.id, status=SyncRun.Status.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(status=SyncRun.Status.QUEUED, owner=None, heartbeat_at=now):
                requeued += 1
                transaction.on_commit(lambda r=run: run_sync.delay(r.partner_id, r.id), robust=True)
    lost_before = now - QUEUED_LOST_AFTER
    lost = SyncRun.objects.filter(status=SyncRun.Status.QUEUED, created_at__lt=lost_before).filter(
        Q(heartbeat_at__lt=lost_before) | Q(heartbeat_at__isnull=True)
    )
    for run in lost:
        SyncRun.objects.filter(id=run.id).update(heartbeat_at=now)
        transaction.on_commit(lambda r=run: run_sync.delay(r.partner_id, r.id), robust=True)
        requeued += 1
    return {"requeued": requeued, "failed": failed}
