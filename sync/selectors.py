"""Reads of the sync for the Preferences page, the API and the admin: when each manual sync
(R10) may start next, the partner's run in progress, and the run a queued one waits for.

The manual syncs themselves (`ACTIONS`: kind, cooldown, the SyncState field holding it) and
which run holds a cooldown are defined here: these reads and the claim in
sync/services/manual.py apply the same rule. The manual run whose `created_at + cooldown`
equals the stored `next_*_at` (the claim sets exactly that) holds it. A holder that *failed on
our side* (OUR_SIDE_ERRORS: nothing the partner or Autotask did) gives the cooldown back.
A failed holder also gives it back once the partner fixed the connection after the holder
started (AutotaskConnection.restored_at: new credentials saved, or Test connection passed), so
"Retry now" checks the fix at once. Everything else keeps it: success, partial success, and
failures where Autotask answered (refused the API user, rejected a request, sent data we could
not read) and nothing was fixed since.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from integrations.selectors import connection_for
from partners.formatting import format_wait_until
from partners.models import Partner

from .models import SyncRun, SyncState
from .wording import MESSAGES, format_wait

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
            "Brings in invoices created, and customers created or changed, in Autotask within "
            "the last hour, and re-reads your unpaid invoices created in the last 30 days (the "
            "800 newest), so one paid or voided in Autotask since is updated here too, without "
            "waiting for the hourly sync. Older unpaid invoices: Fetch Unpaid Invoices."
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


def action_for(kind: str) -> ManualAction:
    try:
        return ACTIONS[kind]
    except KeyError:
        raise ValueError(f"no manual sync of kind {kind!r}") from None


def partner_zone(partner: Partner) -> zoneinfo.ZoneInfo:
    return partner.zone


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
    def when_text(self) -> str:
        """ "tomorrow at 01:18 CET", in the partner's time zone; "" when available."""
        if self.available_at is None:
            return ""
        with timezone.override(self.zone):
            return format_wait_until(self.available_at, now=self.now)

    @property
    def text(self) -> str:
        """ "available today at 15:04 CET (in 12 min)"; "" when available. The page's script
        keeps this wording and only counts the "(in …)" part down."""
        if self.available_at is None:
            return ""
        return f"available {self.when_text} ({format_wait(self.wait_seconds)})"


def manual_sync_unavailable_reason(partner: Partner) -> str | None:
    """Why this partner has no manual syncs, or None. A partner needs Autotask as its primary
    integration *and* a connection that is not disconnected; "needs attention" still counts as
    connected (the partner may have just fixed the API user in Autotask and want to check)."""
    if partner.primary_integration != Partner.Integration.AUTOTASK:
        return MESSAGES["not_autotask"]
    connection = connection_for(partner=partner)
    if connection is None or not connection.is_active:
        return MESSAGES["not_connected"]
    return None


def restored_at(partner: Partner) -> datetime | None:
    """When the partner last fixed its connection (new credentials, or a test that passed)."""
    connection = connection_for(partner=partner)
    return connection.restored_at if connection is not None else None


def holds_no_cooldown(run: SyncRun, fixed_at: datetime | None = None) -> bool:
    """A failed holder gives its cooldown back when the failure was ours, or when the partner
    fixed the connection after it was started (the retry checks the fix)."""
    if run.status != SyncRun.Status.FAILED:
        return False
    return run.error_kind in OUR_SIDE_ERRORS or (fixed_at is not None and run.created_at < fixed_at)


def manual_sync_availability(
    *, partner: Partner, now: datetime | None = None
) -> dict[str, Availability]:
    """When each manual sync may start next. The same rule as the claim in manual_sync_start,
    read without claiming (for the page and the status API)."""
    now = now or timezone.now()
    zone = partner_zone(partner)
    state = SyncState.objects.filter(partner=partner).first()
    fixed_at = restored_at(partner)
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
            if holder is not None and holds_no_cooldown(holder, fixed_at):
                until = None
        result[kind] = Availability(action=action, available_at=until, now=now, zone=zone)
    return result


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
