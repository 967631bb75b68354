"""Celery tasks of the sync: thin interfaces over sync/services/ and sync/dispatch.py. Tasks take
ids only."""

import logging
import random

from celery import shared_task

from partners.tenancy import PartnerTask

from .dispatch import dispatch_due_runs
from .services import reaper, runs
from .services.leases import RetryLater

log = logging.getLogger(__name__)

# A countdown must stay under the broker's visibility timeout (RELIABILITY.md §2): longer
# waits are left to the reaper, which re-enqueues queued runs.
MAX_COUNTDOWN = 300


@shared_task(base=PartnerTask, bind=True, name="sync.run_sync", max_retries=40)
def run_sync(self, partner, run_id):
    try:
        run = runs.execute_run(partner=partner, run_id=run_id)
    except RetryLater as exc:
        # Jitter only upwards: a countdown is the earliest moment the run can go on (the
        # holder's lease stale, the budget back), so trying earlier only costs a delivery.
        countdown = min(MAX_COUNTDOWN, exc.countdown)
        if exc.jitter:
            countdown *= 1 + 0.2 * random.random()
        log.info("sync run %s: retry in %.1fs (%s)", run_id, countdown, exc)
        raise self.retry(countdown=countdown, exc=exc) from exc
    log.info("sync run %s finished: %s", run_id, run.status)
    return run.status


@shared_task(name="sync.reap_stuck_runs")
def reap_stuck_runs():
    result = reaper.reap_stuck_runs()
    if any(result.values()):
        log.warning("reaper: %s", result)
    return result


@shared_task(name="sync.tick")
def tick():
    """Every minute (beat): create and enqueue the scheduled runs that are due."""
    created = dispatch_due_runs()
    return len(created)
