"""Scheduling (R3): beat runs one global `sync.tick` every minute; it creates each connected
partner's hourly and daily runs when that partner's moment in the period has come.

- Each partner has a fixed offset inside the period (a hash of its id), so 1,000 partners
  spread over the hour/day instead of starting in the same second.
- A run is unique per (partner, kind, slot) in the database, so two beats, a redelivered tick
  or a tick after an outage create at most one run per slot, and a beat that was down for three
  slots catches up with one run, not three (CQ-8).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.utils import timezone

from integrations.models import AutotaskConnection

from .models import SyncRun
from .services.runs import sync_run_create

PERIODS = {
    SyncRun.Kind.NEW_DATA: timedelta(hours=1),
    SyncRun.Kind.UNPAID: timedelta(days=1),
}


def partner_offset(partner_id: int, period: timedelta) -> timedelta:
    digest = hashlib.sha256(f"paysync-offset:{partner_id}".encode()).digest()
    seconds = int.from_bytes(digest[:4], "big") % int(period.total_seconds())
    return timedelta(seconds=seconds)


def slot_for(now: datetime, period: timedelta, offset: timedelta) -> str | None:
    """The slot a partner is due for at `now`, e.g. "h2026112514" or "d20261125"."""
    shifted = now - offset
    if period == timedelta(hours=1):
        return "h" + shifted.strftime("%Y%m%d%H")
    return "d" + shifted.strftime("%Y%m%d")


def dispatch_due_runs(*, now: datetime | None = None) -> list[SyncRun]:
    now = now or timezone.now()
    created: list[SyncRun] = []
    connections = AutotaskConnection.objects.filter(
        status=AutotaskConnection.Status.CONNECTED, schedules_paused=False
    ).select_related("partner")
    for connection in connections:
        if connection.connected_at is None:
            continue
        for kind, period in PERIODS.items():
            offset = partner_offset(connection.partner_id, period)
            slot = slot_for(now, period, offset)
            # The first slot starts after the connect's initial sync, not before it.
            if now - offset < connection.connected_at:
                continue
            if SyncRun.objects.filter(partner=connection.partner, kind=kind, slot=slot).exists():
                continue
            run = sync_run_create(
                partner=connection.partner, kind=kind, trigger=SyncRun.Trigger.SCHEDULE, slot=slot
            )
            if run is not None:
                created.append(run)
    return created
