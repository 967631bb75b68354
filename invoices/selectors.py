"""Reads of invoices for the dashboard's lists, the API and the customer page.

Sorting and date ranges (issue 17, item 8): the URL names in INVOICE_SORTS / CUSTOMER_SORTS are
the only orders a request can ask for (config/listing.py); the date range filters the invoice
date or the due date, both ends inclusive.

At scale (issue 19, item 5; bench/list_scale.py, a partner with 200,000 invoices): every list
query is led by the partner on an index (invoices/migrations/0003), and nothing on a list page
reads all of a big partner's rows. Counting or totalling 200,000 rows costs 30-90 ms on its own,
so the dashboard's count and totals read at most LIST_CAP + 1 rows (`capped_totals`): up to
LIST_CAP rows the page shows the exact count and totals per currency; above it, "more than
10,000" and no totals, with the way to get them (a narrower filter or the CSV export). The API
keeps its exact `count` (a contract), an index-only count.
"""

from datetime import date

from django.db import connection
from django.db.models import Count, DecimalField, Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.listing import parse_sort
from customers.models import Customer

from .models import MONEY, ZERO, Invoice, InvoiceStatus, OpenBalance, balances_kept

# Also written out in SQL in the open balances' triggers (invoices/migrations/0005): change both.
OPEN_STATES = (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
# The most rows a dashboard list counts or totals (see the module docstring).
LIST_CAP = 10_000

INVOICE_SORTS = {
    "number": ("number",),
    "customer": ("customer__name",),
    "invoice_date": ("invoice_date",),
    "due_date": ("due_date",),
    "total": ("total",),
    "outstanding": ("outstanding",),
    "status": ("status",),
}
INVOICE_DEFAULT_SORT = "-invoice_date"
# Which date the `from`/`to` range filters (`?dates=`).
INVOICE_DATE_FIELDS = {"invoice": "invoice_date", "due": "due_date"}

CUSTOMER_SORTS = {
    "name": ("name",),
    "number": ("number",),
    "city": ("city",),
    "currency": ("currency",),
    "outstanding": ("outstanding_total",),
}
CUSTOMER_DEFAULT_SORT = "name"


def invoice_list(
    *,
    partner,
    search: str = "",
    status: str = "",
    customer_id=None,
    archived: str = "no",
    missing: bool = False,
    sort: str = "",
    date_field: str = "invoice",
    date_from: date | None = None,
    date_to: date | None = None,
):
    """The partner's invoices for lists: archived ones hidden unless asked for; `sort` is a URL
    sort name (INVOICE_SORTS, unknown → newest invoice date first)."""
    qs = Invoice.objects.for_partner(partner).select_related("customer")
    if archived == "only":
        qs = qs.filter(archived_at__isnull=False)
    elif archived != "all":
        qs = qs.filter(archived_at__isnull=True)
    if search:
        # The customers first (a few thousand names at most), then invoices by number (trigram
        # index) or by those customers (partner, customer index): a join filtered on the
        # customer's name would read every invoice of the partner.
        customer_ids = list(
            Customer.objects.for_partner(partner)
            .filter(name__icontains=search)
            .values_list("id", flat=True)[:LIST_CAP]
        )
        qs = qs.filter(Q(number__icontains=search) | Q(customer_id__in=customer_ids))
    if status in InvoiceStatus.values:
        qs = qs.filter(status=status)
    if customer_id:
        qs = qs.filter(customer_id=customer_id)
    if missing:
        qs = qs.filter(missing_in_autotask_since__isnull=False)
    field = INVOICE_DATE_FIELDS.get(date_field, "invoice_date")
    if date_from:
        qs = qs.filter(**{f"{field}__gte": date_from})
    if date_to:
        qs = qs.filter(**{f"{field}__lte": date_to})
    order = parse_sort(sort, INVOICE_SORTS, INVOICE_DEFAULT_SORT)
    if any(f.lstrip("-").startswith("customer__") for f in order.order_by):
        # Said twice on purpose (an invoice's customer is always the partner's): with the
        # partner on the customers' side too, PostgreSQL walks the (partner, name) index and
        # stops after the page's customers; without it, it sorted every partner's customers
        # (200,000-invoice partner: 51 ms → 0.5 ms; bench/list_scale.py).
        qs = qs.filter(customer__partner=partner)
    return qs.order_by(*order.order_by)


def sort_the_range(qs, order_by: tuple[str, ...]):
    """`qs` ordered by `order_by` as an expression the order's index cannot serve, so that
    PostgreSQL reads the rows its filter selects (through that filter's index) and sorts them,
    instead of walking the order's index and filtering. For a small filtered set only (the
    caller knows it from `capped_totals`: at most LIST_CAP rows): the planner guesses the
    walk's cost from independent columns, and a due-date range walked in invoice-date order
    (dates that go together) was 85 ms for 50 rows of a 200,000-invoice partner; sorting the
    range's rows takes a few. Same rows, same order: COALESCE(x, x) is x. The page's customers
    come in a second query (50 ids): joined, PostgreSQL joined all the partner's customers to
    the range's rows before sorting them (8,580 rows: ~10 of a 20 ms query)."""
    first, *rest = order_by
    name = first.lstrip("-")
    key = Coalesce(F(name), F(name))
    qs = qs.select_related(None).prefetch_related("customer")
    return qs.order_by(key.desc() if first.startswith("-") else key.asc(), *rest)


def invoice_totals(qs) -> list[dict]:
    """Per currency: count, total and outstanding of the rows of `qs` (a scoped queryset)."""
    return list(
        qs.order_by()
        .values("currency")
        .annotate(n=Count("id"), total=Sum("total"), outstanding=Sum("outstanding"))
        .order_by("currency")
    )


def capped_totals(qs, *, amounts=("total", "outstanding"), cap: int | None = None):
    """Per currency: `n` and the sums of `amounts` over the rows of `qs` (a scoped invoice
    queryset), reading at most `cap` + 1 of them. Returns (rows, complete): complete is False
    when `qs` has more than `cap` rows, and the rows are then not the totals (not to be shown).
    One statement: `SELECT currency, count(*), sum(…) FROM (… LIMIT cap + 1) GROUP BY currency`."""
    cap = LIST_CAP if cap is None else cap
    inner = qs.order_by().values("currency", *amounts)[: cap + 1]
    sql, params = inner.query.sql_with_params()
    # The ORM cannot group the rows of a sliced queryset: SQL around Django's own, with column
    # names from this module only and the values as parameters.
    if not set(amounts) <= {"total", "outstanding"}:
        raise ValueError(f"not an amount column: {amounts}")
    sums = ", ".join(f"sum(s.{a})" for a in amounts)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT s.currency, count(*), {sums} FROM ({sql}) s "  # noqa: S608  # nosec B608
            "GROUP BY s.currency ORDER BY s.currency",
            params,
        )
        rows = [dict(zip(("currency", "n", *amounts), r, strict=True)) for r in cur.fetchall()]
    complete = sum(r["n"] for r in rows) <= cap
    return rows, complete


def _open_invoices(partner):
    return Invoice.objects.for_partner(partner).filter(
        archived_at__isnull=True, status__in=OPEN_STATES
    )


def customer_list(*, partner, search: str = "", archived: str = "no", sort: str = ""):
    """The partner's customers with `outstanding_total` (open amounts of their invoices that
    are not archived): a correlated subquery, so a page sorted by name computes it for its own
    50 rows only. Sorted by it, every customer's is needed: added up from the open balances
    PostgreSQL keeps (about one row per customer and currency), not from the invoices."""
    if balances_kept():
        source, amount = OpenBalance.objects.for_partner(partner), "amount"
    else:
        source, amount = _open_invoices(partner), "outstanding"
    owed = (
        source.filter(customer_id=OuterRef("pk"))
        .order_by()
        .values("customer_id")
        .annotate(s=Sum(amount))
        .values("s")
    )
    qs = Customer.objects.for_partner(partner).annotate(
        outstanding_total=Coalesce(
            Subquery(owed, output_field=DecimalField(**MONEY)),
            Value(ZERO),
            output_field=DecimalField(**MONEY),
        )
    )
    if archived == "only":
        qs = qs.filter(archived_at__isnull=False)
    elif archived != "all":
        qs = qs.filter(archived_at__isnull=True)
    if search:
        qs = qs.filter(name__icontains=search)
    return qs.order_by(*parse_sort(sort, CUSTOMER_SORTS, CUSTOMER_DEFAULT_SORT).order_by)


class ByOutstanding:
    """The customers of `customers` (a `customer_list` queryset) sorted by what they owe, a
    slice at a time: what the Paginator gets for the customers list sorted by outstanding
    where PostgreSQL keeps the open balances (`balances_kept`).

    Sorting needs every customer's sum. The queryset's correlated sum runs once per customer
    (10,000 customers: ~22 ms); here one statement reads the page's ids from the customers
    joined to the partner's balances grouped by customer (~12 ms), then the page's 50
    customers come with their sums. Same order as the queryset's: outstanding, then id, both
    ascending or both descending."""

    def __init__(self, customers, *, partner, descending: bool):
        self.customers, self.partner, self.descending = customers, partner, descending

    def count(self) -> int:
        return self.customers.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, key):
        if not isinstance(key, slice):
            return self[key : key + 1][0]
        start = key.start or 0
        limit = self.count() - start if key.stop is None else key.stop - start
        ids = self._ids(start, max(0, limit))
        rows = self.customers.order_by().in_bulk(ids)
        return [rows[i] for i in ids if i in rows]

    def _ids(self, offset: int, limit: int) -> list[int]:
        chosen, params = self.customers.order_by().values("id").query.sql_with_params()
        way = "DESC" if self.descending else "ASC"
        sql = (
            f"SELECT c.id FROM ({chosen}) AS c LEFT JOIN ("  # noqa: S608  # nosec B608
            f"SELECT customer_id, sum(amount) AS owed FROM {OpenBalance._meta.db_table} "
            "WHERE partner_id = %s GROUP BY customer_id) AS b ON b.customer_id = c.id "
            f"ORDER BY COALESCE(b.owed, 0) {way}, c.id {way} LIMIT %s OFFSET %s"
        )
        with connection.cursor() as cur:
            cur.execute(sql, [*params, self.partner.pk, limit, offset])
            return [row[0] for row in cur.fetchall()]


def customer_page_rows(customers, *, partner, order_by: tuple[str, ...]):
    """What the customers list pages through: the queryset itself, or `ByOutstanding` when it
    is sorted by outstanding and PostgreSQL keeps the balances."""
    if balances_kept() and order_by[0].lstrip("-") == "outstanding_total":
        return ByOutstanding(customers, partner=partner, descending=order_by[0][0] == "-")
    return customers


def customers_outstanding(*, partner, customers):
    """Per currency: what the `customers` (a scoped queryset) owe and their number of open
    invoices (`n`), for the list's totals row. (rows, complete) as `capped_totals`. From the
    open balances where PostgreSQL keeps them: always complete, whatever the number of
    invoices. Otherwise from the invoices: not complete above LIST_CAP open invoices."""
    ids = customers.order_by().values("id")
    if not balances_kept():
        return capped_totals(
            _open_invoices(partner).filter(customer_id__in=ids), amounts=("outstanding",)
        )
    rows = (
        OpenBalance.objects.for_partner(partner)
        .filter(customer_id__in=ids)
        .values("currency")
        .annotate(n=Sum("invoices"), outstanding=Sum("amount"))
        .filter(n__gt=0)
        .order_by("currency")
    )
    return list(rows), True


def customer_balance(*, partner, customer, today: date | None = None) -> list[dict]:
    """Per currency of the customer's invoices (archived and void ones left out): outstanding,
    overdue (due before today in the partner's zone) and paid (total minus outstanding)."""
    today = today or timezone.localdate()
    open_q = Q(status__in=OPEN_STATES)
    return list(
        Invoice.objects.for_partner(partner)
        .filter(customer=customer, archived_at__isnull=True)
        .exclude(status=InvoiceStatus.VOID)
        .values("currency")
        .annotate(
            n=Count("id"),
            # Not named after a column: a later Sum("outstanding") would read the aggregate.
            owed=Coalesce(Sum("outstanding", filter=open_q), Value(ZERO)),
            overdue=Coalesce(
                Sum("outstanding", filter=open_q & Q(due_date__lt=today)), Value(ZERO)
            ),
            paid=Coalesce(Sum(F("total") - F("outstanding")), Value(ZERO)),
        )
        .order_by("currency")
    )


def with_duplicate_flag(qs, partner):
    """`qs` (the partner's invoices) with `duplicate_number`: another invoice of the partner
    shows the same number (flagged in lists). A probe of the (partner, number) index per row
    of the page, never a grouping of all the partner's invoices."""
    others = (
        Invoice.objects.for_partner(partner)
        .filter(number=OuterRef("number"))
        .exclude(pk=OuterRef("pk"))
    )
    return qs.annotate(duplicate_number=Exists(others))
