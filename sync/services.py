"""Sync runs: creating them, claiming them (one sync per partner at a time), running them and
recording the outcome. Tasks, views and the admin call these; none of them write SyncRun rows
themselves.

Leases, heartbeats and how fast a dead worker's run resumes (RELIABILITY.md §3, CQ-2..CQ-5):

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
- A run that takes over from a dead owner counts an attempt; after `MAX_ATTEMPTS` lost
  workers (a page that kills its process every time, CQ-5) the next delivery, or the reaper,
  fails it with error_kind "worker_lost" instead of starting a 4th attempt. The partner lease
  then points at a finished run and is free for the partner's next run.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.encryption import SecretUnavailable
from integrations.autotask.client import AutotaskClient
from integrations.autotask.errors import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskError,
    AutotaskRequestError,
    AutotaskResponseError,
)
from integrations.models import AutotaskConnection

from .engine import LeaseLost, SyncEngine
from .models import SyncRun, SyncState

log = logging.getLogger(__name__)

# A run whose heartbeat is older than this is presumed dead (its worker was killed). Its live
# owner renews the heartbeat every LEASE / 3 (heartbeat_interval()). Read at call time: the
# worker test harness shortens it.
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 3  # attempts lost with their worker, then the run fails (CQ-5)
# The reaper re-enqueues a queued run whose task the broker lost when it is this old.
QUEUED_LOST_AFTER = timedelta(minutes=5)
RETRY_MARGIN = 1.0  # seconds after the holder's lease goes stale before trying again
BUSY_COUNTDOWN = 15.0  # at least this between tries while another run of the partner runs


def heartbeat_interval() -> timedelta:
    return LEASE / 3


def worker_lost_message(attempts: int) -> str:
    """The error ops see on a run given up after its worker was lost MAX_ATTEMPTS times."""
    return (
        f"Gave up after {attempts} attempts: the worker running this sync was lost each time "
        "(killed or crashed, e.g. out of memory on one page). Not retried again; check the "
        "worker logs, then start a new sync."
    )


class PartnerBusy(Exception):
    """Another run holds the partner's sync lease."""


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


def sync_run_create(
    *, partner, kind, trigger, slot: str = "", requested_by=None, enqueue: bool = True
) -> SyncRun | None:
    """Create a queued run and enqueue it after commit. With a slot (scheduled runs), a second
    creation for the same slot returns None instead of a duplicate run."""
    from .tasks import run_sync

    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                partner=partner, kind=kind, trigger=trigger, slot=slot, requested_by=requested_by
            )
    except IntegrityError:
        return None
    sync_state_for(partner)
    if enqueue:
        transaction.on_commit(lambda: run_sync.delay(partner.id, run.id), robust=True)
    return run


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
            or not SyncRun.objects.filter(id=state.lease_run_id, status__in=SyncRun.ACTIVE).exists()
        )
        if free:
            SyncState.objects.filter(pk=state.pk).update(
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
    a hung owner alive for ever: the task's hard time limit kills the process."""

    def __init__(self, run_id, partner_id, token):
        self._args = (run_id, partner_id, token)
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(
            target=self._loop, name=f"sync-heartbeat-{run_id}", daemon=True
        )

    def start(self) -> _Heartbeat:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.wait(heartbeat_interval().total_seconds()):
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


def _release_partner(partner, token) -> None:
    SyncState.objects.filter(partner=partner, lease_owner=token).update(
        lease_run=None, lease_owner=None, lease_heartbeat_at=None
    )


def _claim_run(run_id, token) -> bool:
    stale = timezone.now() - LEASE
    now = timezone.now()
    return (
        SyncRun.objects.filter(id=run_id)
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


def _finish(run_id, token, *, status, error_kind="", error_message="", **fields) -> bool:
    now = timezone.now()
    return (
        SyncRun.objects.filter(id=run_id, owner=token).update(
            status=status,
            finished_at=now,
            heartbeat_at=now,
            error_kind=error_kind,
            error_message=error_message[:2000],
            **fields,
        )
        == 1
    )


def sync_run_fail(run: SyncRun, *, error_kind: str, message: str) -> None:
    """Fail a run that never started (no owner yet) or that ops/the reaper gave up on."""
    SyncRun.objects.filter(id=run.id, status__in=SyncRun.ACTIVE).update(
        status=SyncRun.Status.FAILED,
        finished_at=timezone.now(),
        error_kind=error_kind,
        error_message=message[:2000],
    )


def build_client(connection: AutotaskConnection) -> AutotaskClient:
    """A client for the partner's API user. Raises SecretUnavailable when the stored
    credentials cannot be decrypted: never a request with garbage credentials (SE-2)."""
    if connection.username is None or connection.secret is None:
        raise SecretUnavailable("No credentials stored (disconnected).")
    return AutotaskClient(connection.username.reveal(), connection.secret.reveal())


def execute_run(*, partner, run_id: int, clock=timezone.now) -> SyncRun:
    """Run one SyncRun to its end. Raises RetryLater when the caller should run it again later
    (partner busy, Autotask throttling or outage, budget spent); everything else ends the run
    with a recorded outcome."""
    run = SyncRun.objects.get(id=run_id, partner=partner)
    if not run.is_active:
        return run  # a duplicate delivery of a finished run: nothing to do (< 1 s)
    connection = AutotaskConnection.objects.filter(partner=partner).first()
    if connection is None or not connection.is_active:
        sync_run_fail(run, error_kind="not_connected", message="Autotask is not connected.")
        return _reload(run)
    if run.attempts >= MAX_ATTEMPTS and run.status == SyncRun.Status.RUNNING:
        # Only a run whose worker is gone (stale heartbeat): a duplicate delivery must not
        # fail a live third attempt.
        SyncRun.objects.filter(
            Q(heartbeat_at__lt=timezone.now() - LEASE) | Q(heartbeat_at__isnull=True),
            id=run.id,
            status=SyncRun.Status.RUNNING,
            attempts__gte=MAX_ATTEMPTS,
        ).update(
            status=SyncRun.Status.FAILED,
            owner=None,
            finished_at=timezone.now(),
            error_kind="worker_lost",
            error_message=worker_lost_message(run.attempts),
        )
        run.refresh_from_db()
        if not run.is_active:
            return run

    token = uuid.uuid4()
    if not _claim_partner(partner, run, token):
        raise _busy(run, _lease_held(partner))
    heartbeat = None
    try:
        if not _claim_run(run.id, token):
            return _reload(run)  # someone else has it (a redelivered duplicate)
        heartbeat = _start_heartbeat(run, partner, token)
        run.refresh_from_db()
        if run.started_at is None:
            SyncRun.objects.filter(id=run.id).update(started_at=timezone.now())
        try:
            client = build_client(connection)
        except SecretUnavailable as exc:
            connection.record_error("credentials", str(exc), needs_attention=True)
            _finish(
                run.id,
                token,
                status=SyncRun.Status.FAILED,
                error_kind="credentials",
                error_message="Stored Autotask credentials cannot be used; reconnect.",
            )
            return _reload(run)
        engine = SyncEngine(run=run, token=token, connection=connection, client=client, clock=clock)
        try:
            engine.execute()
        except LeaseLost:
            log.warning("sync run %s: lease lost, stopping", run.id)
            return _reload(run)
        except AutotaskAuthError as exc:
            connection.record_error(exc.kind, exc.message, needs_attention=True)
            _finish(
                run.id,
                token,
                status=SyncRun.Status.FAILED,
                error_kind=f"auth:{exc.kind}",
                error_message=exc.message,
                **engine.finish_fields(),
            )
            return _reload(run)
        except AutotaskBudgetExhausted as exc:
            _requeue(run.id, token, engine, exc)
            wait = max(1.0, (exc.resume_at - timezone.now()).total_seconds())
            raise RetryLater(exc.message, countdown=wait) from exc
        except (AutotaskRequestError, AutotaskResponseError) as exc:
            connection.record_error(exc.kind, exc.message, needs_attention=False)
            _finish(
                run.id,
                token,
                status=SyncRun.Status.FAILED,
                error_kind=exc.kind,
                error_message=exc.message,
                **engine.finish_fields(),
            )
            return _reload(run)
        except AutotaskError as exc:  # throttled / transient after the client's own retries
            _requeue(run.id, token, engine, exc)
            raise RetryLater(exc.message, countdown=30) from exc
        except Exception:
            # A bug of ours: the run says so at once (instead of waiting for the reaper), the
            # details go to the log, and the manual cooldown is given back (sync/manual.py).
            log.exception("sync run %s failed with an internal error", run.id)
            _finish(
                run.id,
                token,
                status=SyncRun.Status.FAILED,
                error_kind="internal",
                error_message="An internal error stopped this sync; our team was alerted.",
                **engine.finish_fields(),
            )
            raise
        finally:
            client.close()

        status = SyncRun.Status.PARTIAL if engine.counts["failed"] else SyncRun.Status.SUCCEEDED
        with transaction.atomic():
            if _finish(run.id, token, status=status, **engine.finish_fields()):
                _advance_cursors(partner, run, engine)
                if run.kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA) and (
                    engine.counts["created"] or engine.counts["updated"]
                ):
                    # New or changed invoices: prefetch their PDFs in the background.
                    sync_run_create(
                        partner=partner, kind=SyncRun.Kind.PDF, trigger=SyncRun.Trigger.SCHEDULE
                    )
                _after_successful_sync(partner)
        return _reload(run)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        _release_partner(partner, token)


def _after_successful_sync(partner) -> None:
    """Parked processor webhook events are re-matched after every finished sync (an invoice may
    have arrived, a balance changed). Enqueued after commit; a failure never fails the sync."""
    from payments.services import webhook_events_rematch

    try:
        with transaction.atomic():
            webhook_events_rematch(partner=partner)
    except Exception:
        log.exception("re-matching parked webhook events of partner %s failed", partner.id)


def _requeue(run_id, token, engine, exc) -> None:
    """A polite stop (Autotask throttling or outage, budget spent): the run waits, queued. The
    attempt is given back: `attempts` counts the attempts that ended with their worker lost
    (plus the one running), so MAX_ATTEMPTS caps crashes, and a run throttled three times is
    not failed as "worker lost" the first time its worker dies."""
    SyncRun.objects.filter(id=run_id, owner=token).update(
        status=SyncRun.Status.QUEUED,
        owner=None,
        attempts=F("attempts") - 1,
        error_kind=exc.kind,
        error_message=f"will retry: {exc.message}"[:2000],
        **engine.finish_fields(),
    )


def _advance_cursors(partner, run, engine) -> None:
    state = SyncState.objects.select_for_update().get(partner=partner)
    started = engine.cursor.get("started")
    cutoff = engine.cursor.get("settle_cutoff")
    if run.kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA):
        from datetime import datetime

        state.invoices_created_cursor = datetime.fromisoformat(cutoff)
        state.companies_changed_cursor = datetime.fromisoformat(started)
    state.last_success = {**(state.last_success or {}), run.kind: timezone.now().isoformat()}
    state.save(
        update_fields=["invoices_created_cursor", "companies_changed_cursor", "last_success"]
    )


def _reload(run: SyncRun) -> SyncRun:
    run.refresh_from_db()
    return run


def reap_stuck_runs(*, now=None) -> dict:
    """Runs whose worker died: requeued (attempts < MAX_ATTEMPTS) or failed. Queued runs whose
    task the broker lost are enqueued again. Returns counts for the log and metrics."""
    from .tasks import run_sync

    now = now or timezone.now()
    stale = now - LEASE
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
