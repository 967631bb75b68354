"""Manual syncs (R10): **Fetch New Data** at most once an hour and **Fetch Unpaid Invoices** at
most once every 12 hours per partner, started from Preferences or the API; ops start either from
the admin without a cooldown. (What they are, when each may start next and which run holds a
cooldown: sync/selectors.py.)

The cooldown is a conditional UPDATE on the partner's SyncState row (RELIABILITY.md §1.5 and §3
"Cooldowns"), never a DRF throttle or a cache flag: a throttle let 9 of 20 concurrent clicks in,
and a Redis flush would reset a cache flag. The run is inserted first and the claim made in the
same transaction, so either both commit or neither does; 20 simultaneous clicks queue on the row
lock and PostgreSQL re-checks the WHERE for each of them after the first commits: one run.

A holder that failed on our side gives the cooldown back: the claim's WHERE accepts such a
cooldown in the same statement, so no failure path (engine, reaper, a crash between "failed"
and a reset) has to remember to reset anything, and a later claim can never be undone by a late
reset.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, OuterRef, Q

from config.api import DomainError
from integrations.selectors import connection_for
from partners.models import Partner

from ..models import SyncRun, SyncState
from ..selectors import (
    OUR_SIDE_ERRORS,
    Availability,
    ManualAction,
    action_for,
    manual_sync_availability,
    manual_sync_unavailable_reason,
    restored_at,
)
from ..wording import MESSAGES
from .leases import sync_state_for
from .runs import sync_run_create


class ManualSyncUnavailable(DomainError):
    status = 403
    code = "manual_sync_unavailable"


class CooldownActive(DomainError):
    status = 429
    code = "cooldown"


def _holder_gives_back(partner: Partner, action: ManualAction) -> Exists:
    """SQL: the manual run that set this partner's cooldown failed on our side, or failed
    before the partner fixed the connection (sync/selectors.py `holds_no_cooldown`)."""
    claimed_at = ExpressionWrapper(
        OuterRef(action.state_field) - action.cooldown, output_field=DateTimeField()
    )
    gives_back = Q(error_kind__in=OUR_SIDE_ERRORS)
    fixed_at = restored_at(partner)
    if fixed_at is not None:
        gives_back |= Q(created_at__lt=fixed_at)
    return Exists(
        SyncRun.objects.for_partner(partner).filter(
            gives_back,
            kind=action.kind,
            trigger=SyncRun.Trigger.MANUAL,
            status=SyncRun.Status.FAILED,
            created_at=claimed_at,
        )
    )


def cooldown_error(availability: Availability) -> CooldownActive:
    action = availability.action
    local = availability.local_at
    message = (
        f"{action.title} can run {action.cooldown_text}. It is {availability.text}."
        if local
        else f"{action.title} can run {action.cooldown_text}."
    )
    return CooldownActive(
        message,
        extra={
            "kind": action.kind,
            "available_at": local.isoformat() if local else None,
            "retry_after": availability.wait_seconds,
        },
        headers={"Retry-After": str(max(1, availability.wait_seconds))},
    )


def manual_sync_start(*, partner: Partner, kind: str, user=None) -> SyncRun:
    """Start a partner's manual sync if its cooldown allows. Raises ManualSyncUnavailable (403)
    for partners without manual syncs and CooldownActive (429, with when) inside the cooldown.
    The run is enqueued after commit; it waits for any other sync of the partner (the partner
    lease in execute_run), never runs beside it."""
    action = action_for(kind)
    reason = manual_sync_unavailable_reason(partner)
    if reason:
        raise ManualSyncUnavailable(reason)
    sync_state_for(partner)
    with transaction.atomic():
        run = sync_run_create(
            partner=partner, kind=kind, trigger=SyncRun.Trigger.MANUAL, requested_by=user
        )
        now = run.created_at
        claimable = (
            Q(**{f"{action.state_field}__isnull": True})
            | Q(**{f"{action.state_field}__lte": now})
            | Q(_holder_gives_back(partner, action))
        )
        claimed = (
            SyncState.objects.filter(partner=partner)
            .filter(claimable)
            .update(**{action.state_field: now + action.cooldown})
        )
        if claimed != 1:
            # Raising inside atomic() rolls the run (and its on_commit enqueue) back.
            raise cooldown_error(manual_sync_availability(partner=partner, now=now)[kind])
    return run


def sync_run_ops(*, partner: Partner, kind: str, user, enqueue: bool = True) -> SyncRun:
    """Ops start a manual sync from the admin: no cooldown is checked or changed. Needs an
    active Autotask connection (the primary integration is not checked: ops may need to sync a
    partner whatever it shows as primary). `enqueue=False`: the caller runs it itself
    (`manage.py sync_now`, with sync.services.runs.execute_run), no task is sent."""
    action_for(kind)
    connection = connection_for(partner=partner)
    if connection is None or not connection.is_active:
        raise ManualSyncUnavailable(MESSAGES["not_connected"])
    return sync_run_create(
        partner=partner,
        kind=kind,
        trigger=SyncRun.Trigger.OPS,
        requested_by=user,
        enqueue=enqueue,
    )
