"""Sync runs: creating them, claiming them (one sync per partner at a time), running them and
recording the outcome. Tasks, views and the admin call these; none of them write SyncRun rows
themselves."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
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

# A run whose heartbeat is older than this is presumed dead (its worker was killed).
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 3


class PartnerBusy(Exception):
    """Another run holds the partner's sync lease."""


class RetryLater(Exception):
    def __init__(self, message: str, countdown: float):
        super().__init__(message)
        self.countdown = countdown


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
        transaction.on_commit(lambda: run_sync.delay(partner.id, run.id))
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
            error_message=f"Gave up after {run.attempts} attempts (worker lost each time).",
        )
        run.refresh_from_db()
        if not run.is_active:
            return run

    token = uuid.uuid4()
    if not _claim_partner(partner, run, token):
        raise RetryLater("another sync of this partner is running", countdown=15)
    try:
        if not _claim_run(run.id, token):
            return _reload(run)  # someone else has it (a redelivered duplicate)
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
    SyncRun.objects.filter(id=run_id, owner=token).update(
        status=SyncRun.Status.QUEUED,
        owner=None,
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
                error_message=f"Stopped after {run.attempts} attempts: the worker was lost.",
            )
        else:
            if SyncRun.objects.filter(
                id=run.id, status=SyncRun.Status.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(status=SyncRun.Status.QUEUED, owner=None, heartbeat_at=now):
                requeued += 1
                transaction.on_commit(lambda r=run: run_sync.delay(r.partner_id, r.id))
    lost = SyncRun.objects.filter(status=SyncRun.Status.QUEUED, created_at__lt=stale).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    )
    for run in lost:
        SyncRun.objects.filter(id=run.id).update(heartbeat_at=now)
        transaction.on_commit(lambda r=run: run_sync.delay(r.partner_id, r.id))
        requeued += 1
    return {"requeued": requeued, "failed": failed}
