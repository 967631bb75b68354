"""Leases, heartbeats and how fast a dead worker's run resumes (RELIABILITY.md §3, CQ-2..CQ-5):

- A run's owner holds two leases under one fencing token: the run's (`SyncRun.owner`,
  `heartbeat_at`) and the partner's (`SyncState.lease_owner`, `lease_heartbeat_at`). Every page
  commit is fenced by both (sync/engine.py), so only the owner ever writes (CQ-4).
- A lease is stale, and may be taken over, when its heartbeat is older than `LEASE` (30 s).
  The owner renews both heartbeats every `LEASE / 3` (10 s) from a helper thread
  (`_Heartbeat`), whatever the main thread is doing: a live owner waiting on a slow page, a
  long PDF or a Retry-After is never taken over, and a dead one (SIGKILLed pool child, lost
  machine) is stale at most `LEASE` after its last renewal. stale = 3 x heartbeat interval, as
  RELIABILITY.md §2 asks; the test profile shortens LEASE to 6 s (tests/sync/worker_harness.py).
- A delivery that finds the partner lease held does not guess: it asks to be retried when the
  holder's lease goes stale (`RetryLater.countdown` = time until stale + `RETRY_MARGIN`). A
  redelivered task of a SIGKILLed pool child (task_reject_on_worker_lost: requeued at once)
  thus resumes about LEASE after the kill; another live run of the partner is waited for at
  least `BUSY_COUNTDOWN` at a time. Nothing is taken over before it is stale, so going faster
  would need proof of death (e.g. the owner's pid), which PgBouncer and containers do not give.
  A live owner does not make the waiting run sit out its countdown: when it releases the lease
  it enqueues the partner's oldest run waiting for it (`runs._wake_next_waiting`, after
  commit); the countdown retry stays as the fallback (a lost enqueue, a dead owner).
- A run that takes over from a dead owner counts an attempt; what happens after too many lost
  workers is in sync/services/runs.py (MAX_ATTEMPTS).
- A hung owner is not kept alive for ever. The prefork pool enforced the task's hard time limit
  by killing the child; the sync queue's threads pool cannot kill a thread, so the heartbeat
  enforces it instead: it stops renewing once the owner has held the run for
  `max_ownership()` (the task's hard limit, CELERY_TASK_TIME_LIMIT, 300 s), and logs it. The
  lease then goes stale like a dead worker's, and the reaper requeues the run with its owner
  cleared, which fences the hung thread: it can no longer commit a page or finish the run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import SyncRun, SyncState

log = logging.getLogger(__name__)

# A run whose heartbeat is older than this is presumed dead (its worker was killed). Its live
# owner renews the heartbeat every LEASE / 3 (heartbeat_interval()). Read at call time, by the
# other modules as `leases.LEASE`: the worker test harness shortens it here.
LEASE = timedelta(seconds=30)
RETRY_MARGIN = 1.0  # seconds after the holder's lease goes stale before trying again
BUSY_COUNTDOWN = 15.0  # at least this between tries while another run of the partner runs


def heartbeat_interval() -> timedelta:
    return LEASE / 3


def max_ownership() -> timedelta:
    """How long one owner may hold a run: the task's hard time limit, which the threads pool
    does not enforce (module docstring)."""
    return timedelta(seconds=float(getattr(settings, "CELERY_TASK_TIME_LIMIT", 300) or 300))


class RetryLater(Exception):
    """Run the task again in `countdown` seconds. `jitter`: the caller may add up to 20 % (many
    waiting runs must not retry together); off for waits that end at a known moment."""

    def __init__(self, message: str, countdown: float, *, jitter: bool = True):
        super().__init__(message)
        self.countdown = countdown
        self.jitter = jitter


@dataclass(frozen=True)
class LeaseHeld:
    """Why a claim failed: the partner lease is held by `run_id` and goes stale (if its owner
    stops renewing it) in `stale_in` seconds."""

    run_id: int | None
    stale_in: float


def sync_state_for(partner) -> SyncState:
    state, _ = SyncState.objects.get_or_create(partner=partner)
    return state


def _claim_partner(partner, run, token) -> bool:
    """Take the partner's lease: free, stale, or held by a run that is no longer active. A
    conditional UPDATE whose condition joins SyncRun is not atomic in PostgreSQL (Django turns
    it into `id IN (SELECT …)`, which is not re-checked after a concurrent claim: two claims
    both won), so lock the row and decide. A live run's lease is never taken over, not even by
    a second delivery of that same run: it would release the lease when it exits."""
    sync_state_for(partner)
    now = timezone.now()
    with transaction.atomic():
        state = SyncState.objects.select_for_update().get(partner=partner)
        free = (
            state.lease_run_id is None
            or state.lease_heartbeat_at is None
            or state.lease_heartbeat_at < now - LEASE
            or not SyncRun.objects.for_partner(partner)
            .filter(id=state.lease_run_id, status__in=SyncRun.ACTIVE)
            .exists()
        )
        if free:
            SyncState.objects.for_partner(partner).update(
                lease_run=run, lease_owner=token, lease_heartbeat_at=now
            )
        return free


def _lease_held(partner) -> LeaseHeld:
    """Who holds the partner lease (read after a failed claim) and when it goes stale."""
    state = SyncState.objects.get(partner=partner)
    if state.lease_heartbeat_at is None:
        return LeaseHeld(state.lease_run_id, 0.0)
    stale_at = state.lease_heartbeat_at + LEASE
    return LeaseHeld(state.lease_run_id, max(0.0, (stale_at - timezone.now()).total_seconds()))


def _busy(run, held: LeaseHeld) -> RetryLater:
    """Try again when the holder's lease would go stale. The holder is this very run after its
    worker died (task_reject_on_worker_lost redelivers at once, before the dead owner's lease
    is stale): then that is the earliest moment the run may resume, and the one to aim at."""
    wait = held.stale_in + RETRY_MARGIN
    if held.run_id == run.id:
        return RetryLater("this run's previous owner holds the lease", countdown=wait, jitter=False)
    wait = max(BUSY_COUNTDOWN, wait)
    return RetryLater("another sync of this partner is running", countdown=wait)


def renew_lease(run_id, partner_id, token) -> bool:
    """One heartbeat of a live owner: the run's and the partner's lease, together or neither
    (in the engine's lock order: SyncRun, then SyncState). False: the lease is lost."""
    now = timezone.now()
    with transaction.atomic():
        if not SyncRun.objects.filter(id=run_id, owner=token, status=SyncRun.Status.RUNNING).update(
            heartbeat_at=now
        ):
            return False
        if not SyncState.objects.filter(partner_id=partner_id, lease_owner=token).update(
            lease_heartbeat_at=now
        ):
            transaction.set_rollback(True)
            return False
    return True


class _Heartbeat:
    """Renews the owner's leases every heartbeat_interval() from a daemon thread (own database
    connection, closed at the end) until stop() or until the lease is lost. It dies with its
    process, so a killed worker's lease goes stale LEASE after the last renewal. It cannot keep
    a hung owner alive for ever: it stops renewing after max_ownership() (`expired`)."""

    def __init__(self, run_id, partner_id, token):
        self._args = (run_id, partner_id, token)
        self._stop = threading.Event()
        self.lost = False
        self.expired = False
        self._thread = threading.Thread(
            target=self._loop, name=f"sync-heartbeat-{run_id}", daemon=True
        )

    def start(self) -> _Heartbeat:
        self._thread.start()
        return self

    def _loop(self) -> None:
        deadline = time.monotonic() + max_ownership().total_seconds()
        try:
            while not self._stop.wait(heartbeat_interval().total_seconds()):
                if time.monotonic() >= deadline:
                    self.expired = True
                    log.error(
                        "sync run %s: owner held it past the task time limit (%s); heartbeat "
                        "stopped so the lease goes stale and the run is taken over",
                        self._args[0],
                        max_ownership(),
                    )
                    return
                if not renew_lease(*self._args):
                    self.lost = True
                    log.warning("sync run %s: lease lost, heartbeat stopped", self._args[0])
                    return
        except Exception:
            log.exception("sync run %s: heartbeat failed", self._args[0])
        finally:
            connections.close_all()  # this thread's connections only

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


def _start_heartbeat(run, partner, token) -> _Heartbeat | None:
    """Not inside a caller's transaction (tests, eager tasks): nothing of the run is visible to
    other connections then, and the heartbeat would wait on the caller's row locks."""
    if transaction.get_connection().in_atomic_block:
        return None
    return _Heartbeat(run.id, partner.id, token).start()


def _release_partner(partner, token) -> bool:
    """Free the partner lease if this owner still holds it. True: it was released (the
    caller then wakes the partner's next waiting run, sync/services/runs.py)."""
    return bool(
        SyncState.objects.filter(partner=partner, lease_owner=token).update(
            lease_run=None, lease_owner=None, lease_heartbeat_at=None
        )
    )


def _claim_run(run, token) -> bool:
    stale = timezone.now() - LEASE
    now = timezone.now()
    return (
        SyncRun.objects.for_partner(run.partner_id)
        .filter(id=run.id)
        .filter(
            Q(status=SyncRun.Status.QUEUED)
            | Q(status=SyncRun.Status.RUNNING, heartbeat_at__lt=stale)
            | Q(status=SyncRun.Status.RUNNING, heartbeat_at__isnull=True)
        )
        .update(
            status=SyncRun.Status.RUNNING,
            owner=token,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
        == 1
    )
