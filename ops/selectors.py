"""What the ops console reads: the partners overview (one query for the list's columns) and
the Autotask request budget per database (the Redis limiter)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.autotask.client import default_limiter
from integrations.autotask.limits import RedisLimiter, database_key
from integrations.models import AutotaskConnection
from partners.models import User
from payments.models import WebhookEvent, WritebackOutbox
from sync.models import SyncRun

log = logging.getLogger(__name__)

FAILED_RUNS_WINDOW = timedelta(days=1)
NEEDS_OPS_WRITEBACK = [WritebackOutbox.State.PARKED, WritebackOutbox.State.FAILED]


# --- Autotask request budget (Redis) ----------------------------------------------------------


def budget_usage(database_cis) -> dict[int, tuple[int, int | None]] | None:
    """{database ci: (requests in the current window, our budget or None)} read from the
    Redis limiter in two round trips for the whole page; None when there is no Redis limiter or
    it cannot be read (the page still renders)."""
    limiter = default_limiter()
    if not isinstance(limiter, RedisLimiter):
        return None
    cis = sorted(set(database_cis))
    if not cis:
        return {}
    try:
        usage = limiter.usage([database_key(ci=ci, username="") for ci in cis])
    except Exception:
        log.warning("admin: Autotask budget usage unavailable", exc_info=True)
        return None
    return {ci: usage[database_key(ci=ci, username="")] for ci in cis}


def attach_budgets(partners) -> None:
    partners = list(partners)
    usage = budget_usage(p.database_ci for p in partners if p.database_ci is not None)
    for p in partners:
        p.budget_usage = "unavailable" if usage is None else usage.get(p.database_ci)


# --- partners overview ------------------------------------------------------------------------


def _count(queryset) -> Coalesce:
    """A correlated COUNT per partner (one subquery, no N+1 and no join fan-out)."""
    counted = (
        queryset.filter(partner=OuterRef("pk"))
        .order_by()
        .values("partner")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _last_run(kind: str, field: str) -> Subquery:
    # Uses the (partner, -created_at) index of SyncRun.
    return Subquery(
        SyncRun.objects.filter(partner=OuterRef("pk"), kind=kind)
        .order_by("-created_at", "-id")
        .values(field)[:1]
    )


LISTED_KINDS = [SyncRun.Kind.NEW_DATA, SyncRun.Kind.UNPAID]
ALL_KINDS = [SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA, SyncRun.Kind.UNPAID, SyncRun.Kind.PDF]

# On a partner_overview() queryset.
PROBLEMS = (
    Q(connection_status=AutotaskConnection.Status.NEEDS_ATTENTION)
    | Q(failed_writebacks__gt=0)
    | Q(failed_runs_day__gt=0)
    | Q(parked_events__gt=0)
)


def partner_overview(queryset):
    """Partners with what ops look at first, in one query (the list's columns; the change
    page reads the other kinds' last runs itself)."""
    since = timezone.now() - FAILED_RUNS_WINDOW
    runs = {}
    for kind in LISTED_KINDS:
        runs[f"last_{kind}_status"] = _last_run(kind, "status")
        runs[f"last_{kind}_at"] = _last_run(kind, "created_at")
        runs[f"last_{kind}_id"] = _last_run(kind, "id")
    return queryset.annotate(
        connection_id=F("autotask_connection__id"),
        connection_status=F("autotask_connection__status"),
        schedules_paused=F("autotask_connection__schedules_paused"),
        database_ci=F("autotask_connection__database_ci"),
        user_count=_count(User.objects.all()),
        failed_writebacks=_count(WritebackOutbox.objects.filter(state__in=NEEDS_OPS_WRITEBACK)),
        failed_runs_day=_count(
            SyncRun.objects.filter(status=SyncRun.Status.FAILED, created_at__gte=since)
        ),
        parked_events=_count(WebhookEvent.objects.filter(status=WebhookEvent.Status.PARKED)),
        **runs,
    )
