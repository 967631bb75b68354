"""Scheduling (R3): beat runs one global `sync.tick` every minute; it creates each connected
partner's hourly and daily runs when that partner's moment in the period has come.

- Each partner has a fixed offset inside the period (a hash of its id), so 1,000 partners
  spread over the hour/day instead of starting in the same second.
- A run is unique per (partner, kind, slot) in the database, so two beats, a redelivered tick
  or a tick after an outage create at most one run per slot, and a beat that was down for three
  slots catches up with one run, not three (CQ-8).
- Set-based (issue 19): on PostgreSQL one statement creates the due runs of every partner
  (`INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`, the offset computed in SQL with the
  same sha256 as `partner_offset`) and their SyncState rows, whatever the number of partners:
  the tick costs the same queries at 100 and at 10,000 partners (tests/sync/test_dispatch.py,
  bench/fleet.py). The runs are enqueued after commit over one broker connection. The
  candidates skip slots that already have a run (NOT EXISTS on the slot index) before the
  INSERT: ON CONFLICT alone would also do, but would draw a sequence value for every partner
  every minute; ON CONFLICT is what keeps two beats racing in the same instant to one run.
  SQLite (the newcomer's `bin/run` default) keeps the per-partner loop: a handful of partners.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from integrations.models import AutotaskConnection

from .models import SyncRun, SyncState
from .services.runs import sync_run_create

PERIODS = {
    SyncRun.Kind.NEW_DATA: timedelta(hours=1),
    SyncRun.Kind.UNPAID: timedelta(days=1),
}
# The slot's label per period: the partner's hour or day, shifted by its offset.
_SLOT_FORMATS = {timedelta(hours=1): ("h", "YYYYMMDDHH24"), timedelta(days=1): ("d", "YYYYMMDD")}


# `partner_offset`'s hash in SQL: the first 4 bytes of sha256("paysync-offset:<id>"), unsigned.
OFFSET_SQL = (
    "('x' || encode(substring(sha256(convert_to('paysync-offset:' || {id}, 'UTF8')) "
    "FROM 1 FOR 4), 'hex'))::bit(32)::bigint"
)


class Dispatched(NamedTuple):
    partner_id: int
    id: int


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


def _defaults(model, skip: set[str]) -> tuple[list[str], list]:
    """Columns and database values of the model's defaults, for the fields the statement does
    not compute: the INSERT stays right when a field with a default is added."""
    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in skip:
            continue
        # Typed: a bare NULL parameter in a SELECT list is text, not the column's type.
        columns.append((db.ops.quote_name(field.column), field.cast_db_type(db)))
        values.append(field.get_db_prep_save(field.get_default(), connection=db))
    return columns, values


def _due_runs_sql(now: datetime) -> tuple[str, list]:
    kinds = []
    kind_params: list = []
    for kind, period in PERIODS.items():
        prefix, fmt = _SLOT_FORMATS[period]
        kinds.append("(%s, %s::bigint, %s, %s)")
        kind_params += [str(kind), int(period.total_seconds()), prefix, fmt]
    run_skip = {"partner_id", "kind", "trigger", "status", "slot", "created_at"}
    run_columns, run_values = _defaults(SyncRun, run_skip)
    state_columns, state_values = _defaults(SyncState, {"partner_id"})
    names = lambda columns: ", ".join(name for name, _ in columns)  # noqa: E731
    typed = lambda columns: "".join(f", %s::{kind}" for _, kind in columns)  # noqa: E731
    # Only constants and the models' column names and types are interpolated; values are
    # parameters.
    sql = f"""
        WITH kinds(kind, period, prefix, fmt) AS (VALUES {", ".join(kinds)}),
        due AS (
            SELECT c.partner_id, k.kind,
                   k.prefix || to_char(
                       (%s::timestamptz - make_interval(secs => o.off)) AT TIME ZONE 'UTC', k.fmt
                   ) AS slot
            FROM integrations_autotaskconnection c
            CROSS JOIN kinds k
            CROSS JOIN LATERAL (
                SELECT ({OFFSET_SQL.format(id="c.partner_id")} %% k.period)::double precision AS off
            ) o
            WHERE c.status = %s AND NOT c.schedules_paused AND c.connected_at IS NOT NULL
              AND %s::timestamptz - make_interval(secs => o.off) >= c.connected_at
        ),
        fresh AS (
            SELECT due.* FROM due
            WHERE NOT EXISTS (
                SELECT 1 FROM sync_syncrun r
                WHERE r.partner_id = due.partner_id AND r.kind = due.kind
                  AND r.slot = due.slot AND r.slot <> ''
            )
        ),
        created AS (
            INSERT INTO sync_syncrun
                (partner_id, kind, "trigger", status, slot, created_at, {names(run_columns)})
            SELECT partner_id, kind, %s, %s, slot, %s{typed(run_columns)}
            FROM fresh ORDER BY partner_id, kind
            ON CONFLICT DO NOTHING
            RETURNING partner_id, id
        ),
        states AS (
            INSERT INTO sync_syncstate (partner_id, {names(state_columns)})
            SELECT DISTINCT partner_id{typed(state_columns)} FROM created
            ON CONFLICT (partner_id) DO NOTHING
        )
        SELECT partner_id, id FROM created ORDER BY id
    """  # noqa: S608  # nosec B608 (constants and column names only; values are parameters)
    params = [
        *kind_params,
        now,
        str(AutotaskConnection.Status.CONNECTED),
        now,
        str(SyncRun.Trigger.SCHEDULE),
        str(SyncRun.Status.QUEUED),
        timezone.now(),  # created_at, as auto_now_add would
        *run_values,
        *state_values,
    ]
    return sql, params


def enqueue_runs(runs: list[Dispatched]) -> None:
    """Enqueue runs over one broker connection (one producer) instead of one per run."""
    from .tasks import run_sync  # cycle: sync.tasks imports this module

    if not runs:
        return
    if not hasattr(run_sync, "apply_async"):  # a test's stand-in
        for run in runs:
            run_sync.delay(run.partner_id, run.id)
        return
    with run_sync.app.producer_or_acquire() as producer:
        for run in runs:
            run_sync.apply_async((run.partner_id, run.id), producer=producer)


def dispatch_due_runs(*, now: datetime | None = None) -> list[Dispatched]:
    now = now or timezone.now()
    if db.vendor == "postgresql":
        sql, params = _due_runs_sql(now)
        with transaction.atomic(), db.cursor() as cursor:
            cursor.execute(sql, params)
            created = [Dispatched(*row) for row in cursor.fetchall()]
            transaction.on_commit(lambda: enqueue_runs(created), robust=True)
        return created
    created: list[Dispatched] = []
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
                created.append(Dispatched(run.partner_id, run.id))
    return created
