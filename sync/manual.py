"""Manual syncs (R10): **Fetch New Data** at most once an hour and **Fetch Unpaid Invoices** at
most once every 12 hours per partner, started from Preferences or the API; ops start either from
the admin without a cooldown.

The cooldown is a conditional UPDATE on the partner's SyncState row (RELIABILITY.md §1.5 and §3
"Cooldowns"), never a DRF throttle or a cache flag: a throttle let 9 of 20 concurrent clicks in,
and a Redis flush would reset a cache flag. The run is inserted first and the claim made in the
same transaction, so either both commit or neither does; 20 simultaneous clicks queue on the row
lock and PostgreSQL re-checks the WHERE for each of them after the first commits: one run.

Which run holds a cooldown: the manual run whose `created_at + cooldown` equals the stored
`next_*_at` (the claim sets exactly that). A holder that *failed on our side* (OUR_SIDE_ERRORS:
nothing the partner or Autotask did) gives the cooldown back. The claim's WHERE accepts such a
cooldown in the same statement, so no failure path (engine, reaper, a crash between "failed"
and a reset) has to remember to reset anything, and a later claim can never be undone by a late
reset. Everything else keeps it: success, partial success, and failures where Autotask answered
(refused the API user, rejected a request, sent data we could not read).
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from config.api import DomainError
from integrations.models import AutotaskConnection
from partners.models import Partner

from .models import SyncRun, SyncState
from .services import sync_run_create, sync_state_for

# Failures that are ours, not the partner's or Autotask's: they do not burn the cooldown.
# worker_lost: the worker died three times (reaper or execute_run gave up). internal: reserved
# for an unexpected error of ours. not_connected: the run found no active connection (nothing
# was asked of Autotask). credentials: our stored credentials could not be decrypted.
OUR_SIDE_ERRORS = frozenset({"worker_lost", "internal", "not_connected", "credentials"})


@dataclass(frozen=True)
class ManualAction:
    key: str
    kind: str
    title: str
    description: str
    cooldown: timedelta
    state_field: str
    url_name: str

    @property
    def cooldown_text(self) -> str:
        hours = int(self.cooldown.total_seconds() // 3600)
        return "once an hour" if hours == 1 else f"once every {hours} hours"


ACTIONS: dict[str, ManualAction] = {
    SyncRun.Kind.NEW_DATA: ManualAction(
        key="fetch_new_data",
        kind=SyncRun.Kind.NEW_DATA,
        title="Fetch New Data",
        description=(
            "Brings in invoices and customers created or updated in Autotask within the last "
            "hour, without waiting for the hourly sync."
        ),
        cooldown=timedelta(hours=1),
        state_field="next_fetch_new_data_at",
        url_name="api:sync-fetch-new-data",
    ),
    SyncRun.Kind.UNPAID: ManualAction(
        key="fetch_unpaid_invoices",
        kind=SyncRun.Kind.UNPAID,
        title="Fetch Unpaid Invoices",
        description=(
            "Re-reads every unpaid invoice from Autotask; anything here that does not match "
            "(amount, outstanding amount, due date, status) is corrected, and each correction "
            "is recorded in the run's change list."
        ),
        cooldown=timedelta(hours=12),
        state_field="next_fetch_unpaid_at",
        url_name="api:sync-fetch-unpaid-invoices",
    ),
}

MESSAGES = {
    "not_autotask": (
        "Manual syncs are for partners whose primary integration is Autotask; yours is not."
    ),
    "not_connected": "Autotask is not connected. Connect it under Integrations first.",
}

# What a failed run means, for the person who clicked (the run's page has the raw message).
PLAIN_ERRORS = {
    "worker_lost": "The sync stopped on our side and was given up. You can start it again now.",
    "internal": "The sync failed because of an error on our side. You can start it again now.",
    "not_connected": "Autotask was not connected when the sync started, so nothing was fetched.",
    "credentials": (
        "We could not use the stored Autotask credentials. Reconnect Autotask under "
        "Integrations; you can then start the sync again."
    ),
    "auth:bad_secret": (
        "Autotask refused the API user's password (Secret). Generate a new one in Autotask and "
        "update it under Integrations."
    ),
    "auth:unknown_user": (
        "Autotask no longer knows the API username. Check the API user in Autotask and update "
        "it under Integrations."
    ),
    "auth:bad_integration_code": (
        "Autotask refused our integration: set Integration Vendor to PaySync on the API user."
    ),
    "auth:permission": (
        "The Autotask API user lacks permissions: set its security level to 'API User (system)'."
    ),
    "request": "Autotask rejected a request of this sync. Nothing past that point was changed.",
    "not_found": "Autotask answered 'not found' to a request of this sync.",
    "response": "Autotask sent an answer we could not read, so the sync stopped there.",
    "foreign_origin": "Autotask pointed us to another server, so the sync stopped there.",
}


class ManualSyncUnavailable(DomainError):
    status = 403
    code = "manual_sync_unavailable"


class CooldownActive(DomainError):
    status = 429
    code = "cooldown"


def action_for(kind: str) -> ManualAction:
    try:
        return ACTIONS[kind]
    except KeyError:
        raise ValueError(f"no manual sync of kind {kind!r}") from None


def partner_zone(partner: Partner) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(partner.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def format_wait(seconds: float) -> str:
    """Rounded up, so "in 0 min" is never shown while waiting: "in 7 min", "in 60 min",
    "in 11 h 59 min"."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes <= 60:
        return f"in {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"in {hours} h {rest} min" if rest else f"in {hours} h"


@dataclass(frozen=True)
class Availability:
    action: ManualAction
    available_at: datetime | None  # None: available now
    now: datetime
    zone: zoneinfo.ZoneInfo

    @property
    def available(self) -> bool:
        return self.available_at is None

    @property
    def wait_seconds(self) -> int:
        if self.available_at is None:
            return 0
        return max(0, math.ceil((self.available_at - self.now).total_seconds()))

    @property
    def local_at(self) -> datetime | None:
        return self.available_at.astimezone(self.zone) if self.available_at else None

    @property
    def text(self) -> str:
        """ "available at 15:04 (in 12 min)" in the partner's time zone; "" when available."""
        if self.available_at is None:
            return ""
        return f"available at {self.local_at:%H:%M} ({format_wait(self.wait_seconds)})"


def manual_sync_unavailable_reason(partner: Partner) -> str | None:
    """Why this partner has no manual syncs, or None. A partner needs Autotask as its primary
    integration *and* a connection that is not disconnected; "needs attention" still counts as
    connected (the partner may have just fixed the API user in Autotask and want to check)."""
    if partner.primary_integration != Partner.Integration.AUTOTASK:
        return MESSAGES["not_autotask"]
    connection = AutotaskConnection.objects.filter(partner=partner).first()
    if connection is None or not connection.is_active:
        return MESSAGES["not_connected"]
    return None


def _holder_failed_on_our_side(partner: Partner, action: ManualAction) -> Exists:
    """SQL: the manual run that set this partner's cooldown failed on our side."""
    claimed_at = ExpressionWrapper(
        OuterRef(action.state_field) - action.cooldown, output_field=DateTimeField()
    )
    return Exists(
        SyncRun.objects.for_partner(partner).filter(
            kind=action.kind,
            trigger=SyncRun.Trigger.MANUAL,
            status=SyncRun.Status.FAILED,
            error_kind__in=OUR_SIDE_ERRORS,
            created_at=claimed_at,
        )
    )


def holds_no_cooldown(run: SyncRun) -> bool:
    return run.status == SyncRun.Status.FAILED and run.error_kind in OUR_SIDE_ERRORS


def manual_sync_availability(
    *, partner: Partner, now: datetime | None = None
) -> dict[str, Availability]:
    """When each manual sync may start next. The same rule as the claim in manual_sync_start,
    read without claiming (for the page and the status API)."""
    now = now or timezone.now()
    zone = partner_zone(partner)
    state = SyncState.objects.filter(partner=partner).first()
    result = {}
    for kind, action in ACTIONS.items():
        until = getattr(state, action.state_field) if state else None
        if until is not None and until <= now:
            until = None
        if until is not None:
            holder = (
                SyncRun.objects.for_partner(partner)
                .filter(
                    kind=kind, trigger=SyncRun.Trigger.MANUAL, created_at=until - action.cooldown
                )
                .first()
            )
            if holder is not None and holds_no_cooldown(holder):
                until = None
        result[kind] = Availability(action=action, available_at=until, now=now, zone=zone)
    return result


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
            | Q(_holder_failed_on_our_side(partner, action))
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


def sync_run_ops(*, partner: Partner, kind: str, user) -> SyncRun:
    """Ops start a manual sync from the admin: no cooldown is checked or changed. Needs an
    active Autotask connection (the primary integration is not checked: ops may need to sync a
    partner whatever it shows as primary)."""
    action_for(kind)
    connection = AutotaskConnection.objects.filter(partner=partner).first()
    if connection is None or not connection.is_active:
        raise ManualSyncUnavailable(MESSAGES["not_connected"])
    return sync_run_create(
        partner=partner, kind=kind, trigger=SyncRun.Trigger.OPS, requested_by=user
    )


def plain_error(run: SyncRun) -> str:
    """The run's error in plain words, for the Preferences page; "" when there is none."""
    if run.status == SyncRun.Status.FAILED:
        if run.error_kind in PLAIN_ERRORS:
            return PLAIN_ERRORS[run.error_kind]
        return run.error_message or "The sync failed."
    if run.status == SyncRun.Status.PARTIAL:
        return f"{run.failed} record(s) could not be saved; the rest was synced."
    if run.is_active and run.error_kind:
        return "Autotask is busy or unreachable right now; the sync will retry by itself."
    return ""


TRIGGER_WORDS = {
    SyncRun.Trigger.SCHEDULE: "scheduled",
    SyncRun.Trigger.MANUAL: "manual",
    SyncRun.Trigger.OPS: "support-started",
}


def describe_run(run: SyncRun) -> str:
    """ "scheduled unpaid invoices sync", "first sync after connecting"."""
    if run.trigger == SyncRun.Trigger.CONNECT:
        return "first sync after connecting"
    word = TRIGGER_WORDS.get(run.trigger, run.trigger)
    return f"{word} {run.get_kind_display().lower()} sync"


def waiting_for(run: SyncRun) -> SyncRun | None:
    """The other run of the partner that this queued run waits for (it holds the lease)."""
    if run.status != SyncRun.Status.QUEUED:
        return None
    state = SyncState.objects.filter(partner_id=run.partner_id).select_related("lease_run").first()
    other = state.lease_run if state else None
    if other is not None and other.pk != run.pk and other.is_active:
        return other
    return None


def current_run(partner: Partner) -> SyncRun | None:
    """The partner's run in progress: the one holding the lease, else the oldest active one."""
    state = SyncState.objects.filter(partner=partner).select_related("lease_run").first()
    if state and state.lease_run and state.lease_run.is_active:
        return state.lease_run
    return (
        SyncRun.objects.for_partner(partner)
        .filter(status__in=SyncRun.ACTIVE)
        .order_by("created_at", "id")
        .first()
    )


def last_manual_run(partner: Partner, kind: str) -> SyncRun | None:
    return (
        SyncRun.objects.for_partner(partner)
        .filter(kind=kind, trigger=SyncRun.Trigger.MANUAL)
        .order_by("-created_at", "-id")
        .first()
    )


def manual_sync_status(*, partner: Partner) -> dict:
    """Everything the Preferences page shows (runs as instances; the serializer renders them)."""
    now = timezone.now()
    reason = manual_sync_unavailable_reason(partner)
    actions = None
    if reason is None:
        actions = {}
        for kind, avail in manual_sync_availability(partner=partner, now=now).items():
            act = avail.action
            actions[act.key] = {
                "kind": kind,
                "title": act.title,
                "description": act.description,
                "cooldown_seconds": int(act.cooldown.total_seconds()),
                "available": avail.available,
                "available_at": avail.local_at,
                "wait_seconds": avail.wait_seconds,
                "available_text": avail.text,
                "start_url": reverse(act.url_name),
                "last_run": last_manual_run(partner, kind),
            }
    return {
        "enabled": reason is None,
        "reason": reason,
        "time_zone": str(partner_zone(partner)),
        "now": now,
        "actions": actions,
        "current_run": current_run(partner),
    }
