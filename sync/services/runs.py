"""Sync runs: creating them, running one to its end (`execute_run`: claims, heartbeat and
fencing in sync/services/leases.py) and recording the outcome.

A run that takes over from a dead owner counts an attempt; after `MAX_ATTEMPTS` lost workers
(a page that kills its process every time, CQ-5) the next delivery, or the reaper
(sync/services/reaper.py), fails it with error_kind "worker_lost" instead of starting a 4th
attempt. The partner lease then points at a finished run and is free for the partner's next run.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.encryption import SecretUnavailable
from integrations import clients
from integrations.autotask.errors import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskError,
    AutotaskRequestError,
    AutotaskResponseError,
)
from integrations.models import AutotaskConnection
from integrations.selectors import connection_for

from .. import hooks
from ..engine import LeaseLost, SyncEngine
from ..models import SyncRun, SyncState
from . import leases
from .leases import (
    RetryLater,
    _busy,
    _claim_partner,
    _claim_run,
    _lease_held,
    _release_partner,
    _start_heartbeat,
    sync_state_for,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # attempts lost with their worker, then the run fails (CQ-5)
REQUEUE_WAIT = 30.0  # seconds before a run stopped by throttling or an outage goes on


def requeue_wait(exc: AutotaskError) -> float:
    """How long a run stopped by throttling or an outage waits: REQUEUE_WAIT, or the server's
    Retry-After when longer (a 429, or a 500 with the threshold text: the client raises one
    above its own max_retry_after instead of sleeping through it). The task caps each
    countdown (sync/tasks.py MAX_COUNTDOWN, under the broker's visibility timeout), so a wait
    longer than that costs one refused request per cap instead of one every REQUEUE_WAIT."""
    retry_after = getattr(exc, "retry_after", None)
    return max(REQUEUE_WAIT, float(retry_after or 0.0))


def worker_lost_message(attempts: int) -> str:
    """The error ops see on a run given up after its worker was lost MAX_ATTEMPTS times."""
    return (
        f"Gave up after {attempts} attempts: the worker running this sync was lost each time "
        "(killed or crashed, e.g. out of memory on one page). Not retried again; check the "
        "worker logs, then start a new sync."
    )


def sync_run_create(
    *, partner, kind, trigger, slot: str = "", requested_by=None, enqueue: bool = True
) -> SyncRun | None:
    """Create a queued run and enqueue it after commit. With a slot (scheduled runs), a second
    creation for the same slot returns None instead of a duplicate run."""
    from ..tasks import run_sync  # cycle: sync.tasks imports this module

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
    SyncRun.objects.for_partner(run.partner_id).filter(id=run.id, status__in=SyncRun.ACTIVE).update(
        status=SyncRun.Status.FAILED,
        finished_at=timezone.now(),
        error_kind=error_kind,
        error_message=message[:2000],
    )


def execute_run(*, partner, run_id: int, clock=timezone.now) -> SyncRun:
    """Run one SyncRun to its end. Raises RetryLater when the caller should run it again later
    (partner busy, Autotask throttling or outage, budget spent); everything else ends the run
    with a recorded outcome."""
    run = SyncRun.objects.get(id=run_id, partner=partner)
    if not run.is_active:
        return run  # a duplicate delivery of a finished run: nothing to do (< 1 s)
    connection = connection_for(partner=partner)
    if connection is None or not connection.is_active:
        sync_run_fail(run, error_kind="not_connected", message="Autotask is not connected.")
        return _reload(run)
    if run.attempts >= MAX_ATTEMPTS and run.status == SyncRun.Status.RUNNING:
        # Only a run whose worker is gone (stale heartbeat): a duplicate delivery must not
        # fail a live third attempt.
        SyncRun.objects.for_partner(partner).filter(
            Q(heartbeat_at__lt=timezone.now() - leases.LEASE) | Q(heartbeat_at__isnull=True),
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
        if not _claim_run(run, token):
            return _reload(run)  # someone else has it (a redelivered duplicate)
        heartbeat = _start_heartbeat(run, partner, token)
        run.refresh_from_db()
        if run.started_at is None:
            SyncRun.objects.for_partner(partner).filter(id=run.id).update(started_at=timezone.now())
        try:
            client = clients.build_client(connection)
        except SecretUnavailable as exc:
            connection.record_error("credentials", str(exc), needs_attention=True)
            _fail(
                run,
                token,
                error_kind="credentials",
                message="Stored Autotask credentials cannot be used; reconnect.",
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
            _fail(run, token, error_kind=f"auth:{exc.kind}", message=exc.message, engine=engine)
            return _reload(run)
        except AutotaskBudgetExhausted as exc:
            _requeue(run.id, token, engine, exc)
            wait = max(1.0, (exc.resume_at - timezone.now()).total_seconds())
            raise RetryLater(exc.message, countdown=wait) from exc
        except (AutotaskRequestError, AutotaskResponseError) as exc:
            connection.record_error(exc.kind, exc.message, needs_attention=False)
            _fail(run, token, error_kind=exc.kind, message=exc.message, engine=engine)
            return _reload(run)
        except AutotaskError as exc:  # throttled / transient after the client's own retries
            _requeue(run.id, token, engine, exc)
            raise RetryLater(exc.message, countdown=requeue_wait(exc)) from exc
        except Exception:
            # A bug of ours: the run says so at once (instead of waiting for the reaper), the
            # details go to the log, and the manual cooldown is given back (sync/selectors.py).
            log.exception("sync run %s failed with an internal error", run.id)
            _fail(
                run,
                token,
                error_kind="internal",
                message="An internal error stopped this sync; our team was alerted.",
                engine=engine,
            )
            raise
        finally:
            client.close()

        status = SyncRun.Status.PARTIAL if engine.counts["failed"] else SyncRun.Status.SUCCEEDED
        with transaction.atomic():
            if _finish(run.id, token, status=status, **engine.finish_fields()):
                _advance_cursors(partner, run, engine)
                _clear_last_error(partner, connection)
                if run.kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA) and (
                    engine.counts["created"] or engine.counts["updated"]
                ):
                    # New or changed invoices: prefetch their PDFs in the background.
                    sync_run_create(
                        partner=partner, kind=SyncRun.Kind.PDF, trigger=SyncRun.Trigger.SCHEDULE
                    )
                # Parked webhook events are re-matched, etc. (sync/hooks.py)
                hooks.run_after_successful_sync(partner)
        return _reload(run)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        if _release_partner(partner, token):
            _wake_next_waiting(partner, after_run_id=run.id)


def _clear_last_error(partner, connection) -> None:
    """A run that reached Autotask and finished shows the connection works: the Integrations
    page stops showing an older "Last error" (the run's own skips are on the run), and a
    connection that needed attention is connected again (as when the partner fixes it: its
    banner goes, schedules pick it up, earlier failed manual runs give their cooldown back)."""
    scoped = AutotaskConnection.objects.for_partner(partner).filter(pk=connection.pk)
    now = timezone.now()
    scoped.filter(status=AutotaskConnection.Status.NEEDS_ATTENTION).update(
        status=AutotaskConnection.Status.CONNECTED,
        attention_since=None,
        restored_at=now,
        updated_at=now,
    )
    scoped.exclude(last_error_kind="", last_error_message="", last_error_at=None).update(
        last_error_kind="", last_error_message="", last_error_at=None
    )


def _wake_next_waiting(partner, *, after_run_id: int) -> None:
    """The lease is free: deliver the partner's oldest run that waits for it now, instead of
    after its retry countdown (BUSY_COUNTDOWN + jitter, ~15-36 s). "Waiting" = queued and never
    stopped politely (no error_kind: a run requeued after throttling or a spent budget keeps
    its own countdown). Sent after commit, robustly (a broker hiccup only leaves the retry,
    which stays the fallback); a second delivery of that run is harmless: one of them claims
    it, the other finds it running or finished. One sync per partner still holds: whoever
    starts claims the lease first."""
    from ..tasks import run_sync  # cycle: sync.tasks imports this module

    waiting = (
        SyncRun.objects.for_partner(partner)
        .filter(status=SyncRun.Status.QUEUED, error_kind="")
        .exclude(id=after_run_id)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )
    if waiting is not None:
        partner_id = partner.id
        transaction.on_commit(lambda: run_sync.delay(partner_id, waiting), robust=True)


def _fail(
    run: SyncRun, token, *, error_kind: str, message: str, engine: SyncEngine | None = None
) -> None:
    """End an owned run FAILED with this error, with the engine's counts and cursor once it
    ran. The caller records the error on the connection (if any) and reloads the run: the
    internal-error path re-raises without reading it back."""
    fields = engine.finish_fields() if engine is not None else {}
    _finish(
        run.id,
        token,
        status=SyncRun.Status.FAILED,
        error_kind=error_kind,
        error_message=message,
        **fields,
    )


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
        state.invoices_created_cursor = datetime.fromisoformat(cutoff)
        state.companies_changed_cursor = datetime.fromisoformat(started)
    state.last_success = {**(state.last_success or {}), run.kind: timezone.now().isoformat()}
    state.save(
        update_fields=["invoices_created_cursor", "companies_changed_cursor", "last_success"]
    )


def _reload(run: SyncRun) -> SyncRun:
    run.refresh_from_db()
    return run
