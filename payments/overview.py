"""The partner's home page (issue 17, item 1): what is owed, what came in, whether the syncs are
healthy, and what to do next. It reads invoices, payments, the sync's state and the Autotask
connection, so it lives in payments, the lowest layer that sees them all. Every query is scoped
to the partner and uses an index led by the partner; a handful of aggregate queries whatever
the number of invoices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations.models import AutotaskConnection
from integrations.selectors import connection_for
from invoices.models import Invoice, InvoiceStatus
from sync.dispatch import PERIODS, partner_offset
from sync.models import SyncRun, SyncState
from sync.selectors import partner_zone

from .models import Payment, PaymentSettings, PaymentStatus, ReconciliationDrift, WritebackOutbox

CHART_MONTHS = 6
CENTS = Decimal("0.01")
OPEN_STATES = (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)


@dataclass(frozen=True)
class Money:
    currency: str
    amount: Decimal
    count: int = 0


@dataclass(frozen=True)
class Bar:
    label: str  # "Jul"
    amount: Decimal
    x: int
    y: int
    height: int


@dataclass(frozen=True)
class Step:
    title: str
    done: bool
    url: str
    action: str


@dataclass(frozen=True)
class Problem:
    text: str
    url: str
    action: str


@dataclass
class Overview:
    outstanding: list[Money]
    overdue: list[Money]
    this_month: list[Money]
    chart_currency: str
    bars: list[Bar]
    chart_max: Decimal
    recent_payments: list[Payment]
    connection: AutotaskConnection | None
    last_success: dict[str, datetime | None]
    next_run: dict[str, datetime | None]
    problems: list[Problem] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def getting_started(self) -> bool:
        return not all(step.done for step in self.steps)


def _money(rows, key: str = "total", n: str = "n") -> list[Money]:
    """Per currency, the largest amount first; currencies with no row counted are left out."""
    # Quantized: SQLite (the development database) sums decimals with float noise.
    money = [
        Money(
            currency=r["currency"] or "—", amount=Decimal(r[key] or 0).quantize(CENTS), count=r[n]
        )
        for r in rows
        if r[n]
    ]
    return sorted(money, key=lambda m: m.amount, reverse=True)


def _next_scheduled(partner_id: int, period: timedelta, now: datetime) -> datetime:
    """The start of the partner's next scheduled slot (sync/dispatch.py: a fixed offset in the
    period, slots aligned to the hour or the UTC day)."""
    offset = partner_offset(partner_id, period)
    shifted = now - offset
    if period == timedelta(hours=1):
        start = shifted.replace(minute=0, second=0, microsecond=0)
    else:
        start = shifted.replace(hour=0, minute=0, second=0, microsecond=0)
    return start + period + offset


def _months_back(today: date, n: int) -> list[date]:
    months, year, month = [], today.year, today.month
    for _ in range(n):
        months.append(date(year, month, 1))
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return months[::-1]


def partner_overview(*, partner, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    zone = partner_zone(partner)
    today = timezone.localtime(now, zone).date()
    # Outstanding and overdue in one pass over the open invoices (a big partner has 100,000).
    past_due = Q(due_date__lt=today)
    open_rows = list(
        Invoice.objects.for_partner(partner)
        .filter(archived_at__isnull=True, status__in=OPEN_STATES)
        .values("currency")
        .annotate(
            total=Sum("outstanding"),
            n=Count("id"),
            overdue_total=Sum("outstanding", filter=past_due),
            overdue_n=Count("id", filter=past_due),
        )
    )
    outstanding = _money(open_rows)
    overdue = _money(open_rows, "overdue_total", "overdue_n")

    succeeded = Payment.objects.for_partner(partner).filter(status=PaymentStatus.SUCCEEDED)
    months = _months_back(today, CHART_MONTHS)
    first = timezone.make_aware(datetime.combine(months[0], datetime.min.time()), zone)
    by_month = [
        {**r, "month": r["month"].date() if isinstance(r["month"], datetime) else r["month"]}
        for r in succeeded.filter(received_at__gte=first)
        .annotate(month=TruncMonth("received_at", tzinfo=zone))
        .values("month", "currency")
        .annotate(total=Sum("amount"), n=Count("id"))
    ]
    # This month's payments are the chart's last month (one query for both).
    this_month = _money(r for r in by_month if r["month"] == months[-1])
    # One chart, in the currency with the most money over the period.
    per_currency: dict[str, Decimal] = {}
    for r in by_month:
        per_currency[r["currency"]] = per_currency.get(r["currency"], 0) + r["total"]
    chart_currency = max(per_currency, key=per_currency.get) if per_currency else ""
    amounts = {
        r["month"]: Decimal(r["total"]).quantize(CENTS)
        for r in by_month
        if r["currency"] == chart_currency
    }
    chart_max = max(amounts.values(), default=Decimal(0))
    bars = []
    for i, month in enumerate(months):
        amount = amounts.get(month, Decimal("0.00"))
        height = round(float(amount / chart_max) * 100) if chart_max else 0
        bars.append(
            Bar(
                label=month.strftime("%b"),
                amount=amount,
                x=10 + i * 50,
                y=110 - height,
                height=height,
            )
        )

    recent = list(succeeded.select_related("invoice").order_by("-received_at", "-id")[:5])

    connection = connection_for(partner=partner)
    state = SyncState.objects.filter(partner=partner).first()
    done = {
        kind: parse_datetime(((state.last_success or {}) if state else {}).get(kind) or "")
        for kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA, SyncRun.Kind.UNPAID)
    }
    # The first sync after connecting reads what an hourly run reads (and more).
    hourly = [t for t in (done[SyncRun.Kind.INITIAL], done[SyncRun.Kind.NEW_DATA]) if t]
    last_success = {
        SyncRun.Kind.NEW_DATA: max(hourly) if hourly else None,
        SyncRun.Kind.UNPAID: done[SyncRun.Kind.UNPAID],
    }
    scheduled = (
        connection is not None
        and connection.status == AutotaskConnection.Status.CONNECTED
        and not connection.schedules_paused
    )
    next_run = {
        kind: _next_scheduled(partner.pk, period, now) if scheduled else None
        for kind, period in PERIODS.items()
    }

    integrations_url = reverse("dashboard:integrations")
    problems: list[Problem] = []
    if connection is not None and connection.status == AutotaskConnection.Status.NEEDS_ATTENTION:
        problems.append(
            Problem(
                "Autotask needs attention: syncs and updates of Autotask are on hold.",
                integrations_url,
                "Fix the connection",
            )
        )
    elif connection is not None and connection.schedules_paused:
        problems.append(Problem("Scheduled syncs are paused.", integrations_url, "Resume them"))
    last = last_success[SyncRun.Kind.NEW_DATA]
    if scheduled and last is not None and now - last > timedelta(hours=48):
        problems.append(
            Problem(
                "No sync has succeeded for more than 48 hours.",
                reverse("sync:history"),
                "See the sync history",
            )
        )
    failed_writebacks = (
        WritebackOutbox.objects.for_partner(partner)
        .filter(state__in=(WritebackOutbox.State.PARKED, WritebackOutbox.State.FAILED))
        .count()
    )
    drift = (
        ReconciliationDrift.objects.for_partner(partner).filter(resolved_at__isnull=True).count()
    )
    if failed_writebacks or drift:
        problems.append(
            Problem(
                f"{failed_writebacks + drift} invoice(s) differ between PaySync and Autotask.",
                reverse("payments:drift"),
                "Open Reconciliation",
            )
        )

    has_settings = PaymentSettings.objects.filter(partner=partner).exists()
    steps = [
        Step(
            "Connect Autotask",
            connection is not None and connection.status != AutotaskConnection.Status.DISCONNECTED,
            integrations_url,
            "Connect",
        ),
        Step(
            "First sync finished",
            any(last_success.values()),
            reverse("sync:history"),
            "See the sync history",
        ),
        Step(
            "Payment processor webhook set up",
            has_settings,
            reverse("payments:settings"),
            "Set up payments",
        ),
        Step(
            "First payment received",
            Payment.objects.for_partner(partner).exists(),
            reverse("invoices:list"),
            "Record a payment on an invoice",
        ),
    ]
    return Overview(
        outstanding=outstanding,
        overdue=overdue,
        this_month=this_month,
        chart_currency=chart_currency,
        bars=bars,
        chart_max=chart_max,
        recent_payments=recent,
        connection=connection,
        last_success=last_success,
        next_run=next_run,
        problems=problems,
        steps=steps,
    )
