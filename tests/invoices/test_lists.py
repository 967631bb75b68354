"""Dashboard lists (issue 17, item 8): sorting, date ranges, totals per currency and the
streamed CSV export of invoices, payments and customers; `?ordering=` and dates on the API."""

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.http import StreamingHttpResponse
from django.urls import reverse

from config.listing import parse_date_range, parse_sort, safe_cell
from customers.models import Customer
from invoices.models import Invoice
from invoices.selectors import INVOICE_SORTS
from payments.models import Payment
from tests.factories import create_customer, create_invoice

pytestmark = pytest.mark.django_db


def numbers(response):
    return [inv.number for inv in response.context["page"]]


def read_csv(response):
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def three(partner_a):
    customer = create_customer(partner_a, name="Zeta Corp", currency="USD")
    other = create_customer(partner_a, name="Alpha Ltd", currency="EUR")
    return [
        create_invoice(
            partner_a,
            customer=customer,
            number="B-2",
            total="300.00",
            invoice_date="2026-02-10",
            due_date="2026-03-10",
        ),
        create_invoice(
            partner_a,
            customer=other,
            number="A-1",
            total="50.00",
            currency="EUR",
            invoice_date="2026-01-05",
            due_date="2026-04-01",
        ),
        create_invoice(
            partner_a,
            customer=customer,
            number="C-3",
            total="120.50",
            invoice_date="2026-03-01",
            due_date="2026-02-20",
        ),
    ]


# --- sorting ---------------------------------------------------------------------------------


def test_default_order_is_newest_invoice_date_first(client_a, three):
    response = client_a.get(reverse("invoices:list"))
    assert numbers(response) == ["C-3", "B-2", "A-1"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("total", ["A-1", "C-3", "B-2"]),
        ("-total", ["B-2", "C-3", "A-1"]),
        ("number", ["A-1", "B-2", "C-3"]),
        ("due_date", ["C-3", "B-2", "A-1"]),
        ("customer", ["A-1", "B-2", "C-3"]),
    ],
)
def test_sort_by_whitelisted_column(client_a, three, sort, expected):
    assert numbers(client_a.get(reverse("invoices:list"), {"sort": sort})) == expected


@pytest.mark.parametrize("sort", ["partner_id", "-customer__partner__name", "--total", "total;"])
def test_unknown_sort_gives_the_default_order(client_a, three, sort):
    response = client_a.get(reverse("invoices:list"), {"sort": sort})
    assert response.status_code == 200
    assert numbers(response) == ["C-3", "B-2", "A-1"]
    assert response.context["sort"] == "-invoice_date"


def test_header_shows_direction_and_links_the_other_way(client_a, three):
    response = client_a.get(reverse("invoices:list"), {"sort": "total", "status": "open"})
    body = response.content.decode()
    assert 'aria-sort="ascending"' in body
    total = next(h for h in response.context["headers"] if h["label"] == "Total")
    assert total["direction"] == "ascending"
    assert "sort=-total" in total["url"] and "status=open" in total["url"]
    number = next(h for h in response.context["headers"] if h["label"] == "Number")
    assert number["direction"] is None and "sort=number" in number["url"]
    body = client_a.get(reverse("invoices:list"), {"sort": "-total"}).content.decode()
    assert 'aria-sort="descending"' in body


def test_parse_sort_always_ends_on_id():
    assert parse_sort("-total", INVOICE_SORTS, "number").order_by == ("-total", "-id")
    assert parse_sort("nope", INVOICE_SORTS, "number").order_by == ("number", "id")


# --- date ranges -----------------------------------------------------------------------------


def test_invoice_date_range_is_inclusive(client_a, three):
    response = client_a.get(reverse("invoices:list"), {"from": "2026-02-10", "to": "2026-03-01"})
    assert sorted(numbers(response)) == ["B-2", "C-3"]


def test_due_date_range(client_a, three):
    response = client_a.get(
        reverse("invoices:list"), {"dates": "due", "from": "2026-03-01", "to": "2026-04-30"}
    )
    assert sorted(numbers(response)) == ["A-1", "B-2"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2026-13-01"}, "is not a date"),
        ({"to": "yesterday"}, "is not a date"),
        ({"from": "2026-03-01", "to": "2026-02-01"}, "after the To date"),
    ],
)
def test_invalid_dates_give_a_message_not_a_500(client_a, three, params, words):
    response = client_a.get(reverse("invoices:list"), params)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="date-error"' in body and words in body
    assert len(numbers(response)) == 3  # the range is left out, the rest still applies
    export = client_a.get(reverse("invoices:export"), params)
    assert export.status_code == 400 and words in export.content.decode()


def test_parse_date_range_keeps_what_was_typed():
    dates = parse_date_range({"from": " 2026-01-02 ", "to": ""})
    assert dates.start == date(2026, 1, 2) and dates.end is None and not dates.error


# --- totals ----------------------------------------------------------------------------------


def test_totals_row_sums_filtered_rows_per_currency(client_a, three, partner_a, partner_b):
    create_invoice(partner_b, total="9999.00")  # another partner's: never counted
    create_invoice(partner_a, total="1.00", archived_at="2026-01-01T00:00:00Z")  # hidden
    response = client_a.get(reverse("invoices:list"))
    totals = {t["currency"]: t for t in response.context["totals"]}
    assert set(totals) == {"EUR", "USD"}
    assert totals["USD"]["total"] == Decimal("420.50") and totals["USD"]["n"] == 2
    assert totals["EUR"]["total"] == Decimal("50.00") and totals["EUR"]["n"] == 1
    body = response.content.decode()
    assert "$420.50" in body and "€50.00" in body
    # Filtered: the totals follow the filter, not the whole table.
    response = client_a.get(reverse("invoices:list"), {"from": "2026-03-01"})
    assert [(t["currency"], t["total"]) for t in response.context["totals"]] == [
        ("USD", Decimal("120.50"))
    ]


def test_money_in_the_list_uses_the_money_filter(client_a, three):
    body = client_a.get(reverse("invoices:list")).content.decode()
    assert "$300.00" in body and "300.00 USD" not in body


def test_customer_name_links_to_the_customer_page(client_a, three):
    body = client_a.get(reverse("invoices:list")).content.decode()
    assert reverse("customers:detail", args=[three[0].customer_id]) in body


# --- CSV export ------------------------------------------------------------------------------


def test_export_keeps_the_filters_and_the_order(client_a, three):
    page = client_a.get(reverse("invoices:list"), {"sort": "total", "status": "open"})
    link = reverse("invoices:export") + "?" + page.context["query"]
    assert f'href="{link.replace("&", "&amp;")}"' in page.content.decode()
    response = client_a.get(reverse("invoices:export"), {"sort": "total", "from": "2026-02-01"})
    assert response["Content-Type"].startswith("text/csv")
    today = date.today()
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and "invoices-" in disposition
    assert f"{today:%Y}-" in disposition and disposition.endswith('.csv"')
    rows = read_csv(response)
    assert rows[0][:3] == ["Number", "Customer", "Customer number"]
    assert [r[0] for r in rows[1:]] == ["C-3", "B-2"]
    assert rows[1][6] == "120.50" and rows[1][5] == "USD"


def test_export_marks_overdue_and_streams(client_a, partner_a):
    create_invoice(partner_a, number="LATE-1", due_date=date.today() - timedelta(days=3))
    rows = read_csv(client_a.get(reverse("invoices:export")))
    assert rows[1][0] == "LATE-1" and rows[1][9] == "Overdue"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", ["invoices:export", "customers:export", "payments:export"])
def test_export_streams_its_cursor_without_hold(client_a, partner_a, url, monkeypatch):
    """The rows come from a server-side cursor declared inside a transaction: PostgreSQL sends
    the first rows at once, where a WITH HOLD cursor (autocommit) is computed to its end
    first (config/listing.py). The transaction ends with the download."""
    for n in range(3):
        create_invoice(partner_a, number=f"S-{n}")
    declared = []
    wrapper = type(connections["default"])
    original = wrapper.create_cursor

    def create_cursor(self, name=None):
        if name:
            declared.append("with hold" if self.connection.autocommit else "in transaction")
        return original(self, name)

    monkeypatch.setattr(wrapper, "create_cursor", create_cursor)
    response = client_a.get(reverse(url))
    assert response.status_code == 200
    assert declared == []  # nothing read before the body is
    rows = read_csv(response)
    assert len(rows) > 1 or url != "invoices:export"
    assert declared == ["in transaction"]
    assert not connection.in_atomic_block  # the transaction ended with the last row


@pytest.mark.parametrize("evil", ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)"])
def test_export_defuses_formulas(client_a, partner_a, evil):
    customer = create_customer(partner_a, name=evil)
    create_invoice(partner_a, customer=customer, number=evil)
    rows = read_csv(client_a.get(reverse("invoices:export")))
    assert rows[1][0] == "'" + evil and rows[1][1] == "'" + evil


def test_safe_cell_leaves_numbers_and_plain_text():
    assert safe_cell(Decimal("-5.00")) == Decimal("-5.00")
    assert safe_cell("Acme") == "Acme" and safe_cell(None) == ""
    assert safe_cell("\t=1") == "'\t=1"


def test_export_is_scoped_to_the_partner(client_a, client, user_b, partner_a, partner_b):
    create_invoice(partner_a, number="MINE-1")
    create_invoice(partner_b, number="THEIRS-1")
    rows = read_csv(client_a.get(reverse("invoices:export"), {"archived": "all"}))
    assert [r[0] for r in rows[1:]] == ["MINE-1"]
    client.force_login(user_b)
    rows = read_csv(client.get(reverse("invoices:export"), {"archived": "all"}))
    assert [r[0] for r in rows[1:]] == ["THEIRS-1"]


def test_export_needs_a_login(client):
    response = client.get(reverse("invoices:export"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- payments --------------------------------------------------------------------------------


@pytest.fixture
def payments(partner_a):
    usd = create_invoice(partner_a, number="P-USD", total="500.00")
    eur = create_invoice(partner_a, number="P-EUR", total="500.00", currency="EUR")
    made = [
        Payment.objects.create(
            partner=partner_a, invoice=usd, amount="10.00", received_at="2026-05-01T10:00:00Z"
        ),
        Payment.objects.create(
            partner=partner_a, invoice=usd, amount="30.00", received_at="2026-05-03T10:00:00Z"
        ),
        Payment.objects.create(
            partner=partner_a,
            invoice=eur,
            amount="20.00",
            currency="EUR",
            received_at="2026-05-02T10:00:00Z",
        ),
        Payment.objects.create(
            partner=partner_a,
            invoice=usd,
            amount="99.00",
            status="refunded",
            received_at="2026-05-02T11:00:00Z",
        ),
    ]
    return made


def amounts(response):
    return [p.amount for p in response.context["page"]]


def test_payments_sort_and_default(client_a, payments):
    assert amounts(client_a.get(reverse("dashboard:payments"))) == [
        Decimal("30.00"),
        Decimal("99.00"),
        Decimal("20.00"),
        Decimal("10.00"),
    ]
    assert amounts(client_a.get(reverse("dashboard:payments"), {"sort": "amount"}))[0] == Decimal(
        "10.00"
    )
    bogus = client_a.get(reverse("dashboard:payments"), {"sort": "partner"})
    assert bogus.context["sort"] == "-received_at"


def test_payments_received_date_range_and_totals(client_a, payments):
    response = client_a.get(
        reverse("dashboard:payments"), {"from": "2026-05-02", "to": "2026-05-02"}
    )
    assert sorted(amounts(response)) == [Decimal("20.00"), Decimal("99.00")]
    # Totals count succeeded payments only (the refund is listed, not received).
    assert [(t["currency"], t["amount"]) for t in response.context["totals"]] == [
        ("EUR", Decimal("20.00"))
    ]
    full = client_a.get(reverse("dashboard:payments"))
    totals = {t["currency"]: t["amount"] for t in full.context["totals"]}
    assert totals == {"EUR": Decimal("20.00"), "USD": Decimal("40.00")}
    body = full.content.decode()
    assert "$40.00" in body and "onsubmit" not in body and "data-confirm=" in body


def test_payments_invalid_date(client_a, payments):
    response = client_a.get(reverse("dashboard:payments"), {"from": "05/02/2026"})
    assert response.status_code == 200 and 'id="date-error"' in response.content.decode()
    assert len(amounts(response)) == 4
    assert client_a.get(reverse("payments:export"), {"from": "05/02/2026"}).status_code == 400


def test_payments_export(client_a, client, user_b, partner_b, payments):
    rows = read_csv(client_a.get(reverse("payments:export"), {"sort": "amount"}))
    assert rows[0][:3] == ["Received", "Invoice", "Amount"]
    assert [r[2] for r in rows[1:]] == ["10.00", "20.00", "30.00", "99.00"]
    assert rows[1][1] == "P-USD" and rows[1][0].startswith("2026-05-01T10:00")
    client.force_login(user_b)
    assert len(read_csv(client.get(reverse("payments:export")))) == 1  # header only


# --- customers -------------------------------------------------------------------------------


def test_customers_sort_totals_and_export(client_a, partner_a, partner_b):
    zed = create_customer(partner_a, name="Zed", city="Oslo", currency="USD")
    amy = create_customer(partner_a, name="=Amy", city="Bergen", currency="USD")
    create_invoice(partner_a, customer=zed, total="70.00")
    create_invoice(partner_a, customer=amy, total="5.00")
    create_invoice(partner_a, customer=amy, total="8.00", paid_in_autotask_on="2026-01-02")
    create_invoice(partner_b, total="1000.00")
    url = reverse("dashboard:customers")
    response = client_a.get(url, {"sort": "-outstanding"})
    assert [(c.name, c.outstanding_total) for c in response.context["page"]] == [
        ("Zed", Decimal("70.00")),
        ("=Amy", Decimal("5.00")),
    ]
    assert [c.name for c in client_a.get(url, {"sort": "city"}).context["page"]] == ["=Amy", "Zed"]
    assert client_a.get(url, {"sort": "secret"}).context["sort"] == "name"
    assert [(t["currency"], t["outstanding"]) for t in response.context["totals"]] == [
        ("USD", Decimal("75.00"))
    ]
    body = response.content.decode()
    assert "$75.00" in body and reverse("customers:detail", args=[zed.pk]) in body
    rows = read_csv(client_a.get(reverse("customers:export"), {"sort": "-outstanding"}))
    assert [r[0] for r in rows[1:]] == ["Zed", "'=Amy"]
    assert rows[1][10] == "70.00"


def test_archive_button_asks_first(client_a, partner_a):
    create_customer(partner_a, name="Keep Me")
    body = client_a.get(reverse("dashboard:customers")).content.decode()
    assert 'data-confirm="Archive Keep Me?' in body
    assert Customer.objects.filter(partner=partner_a, archived_at__isnull=True).count() == 1


# --- API -------------------------------------------------------------------------------------


def test_api_ordering_and_dates(api_a, three):
    data = api_a.get("/api/v1/invoices/", {"ordering": "-total"}).json()
    assert [r["number"] for r in data["results"]] == ["B-2", "C-3", "A-1"]
    # An unknown sort is a 400 naming `ordering` (issue 18), not silently the default order.
    bad = api_a.get("/api/v1/invoices/", {"ordering": "partner__name"})
    assert bad.status_code == 400 and bad.json()["parameter"] == "ordering"
    data = api_a.get("/api/v1/invoices/", {"from": "2026-02-01", "to": "2026-02-28"}).json()
    assert [r["number"] for r in data["results"]] == ["B-2"]
    bad = api_a.get("/api/v1/invoices/", {"from": "soon"})
    assert bad.status_code == 400 and "not a date" in bad.content.decode()
    data = api_a.get("/api/v1/customers/", {"ordering": "-name"}).json()
    assert [r["name"] for r in data["results"]] == ["Zeta Corp", "Alpha Ltd"]


def test_api_payments_ordering_and_dates(api_a, payments):
    data = api_a.get("/api/v1/payments/", {"ordering": "amount"}).json()
    assert [r["amount"] for r in data["results"]] == ["10.00", "20.00", "30.00", "99.00"]
    data = api_a.get("/api/v1/payments/", {"from": "2026-05-03"}).json()
    assert [r["amount"] for r in data["results"]] == ["30.00"]


def test_api_page_size_capped_at_documented_maximum(api_a, partner_a):
    customer = create_customer(partner_a)
    Invoice.objects.bulk_create(
        Invoice(
            partner=partner_a,
            customer=customer,
            source="local",
            number=f"N-{i}",
            invoice_date="2026-01-01",
            total="1.00",
        )
        for i in range(501)
    )
    assert len(api_a.get("/api/v1/invoices/", {"page_size": 3}).json()["results"]) == 3
    # README: 1 to 500; a larger size is clamped (config.api.Pagination).
    assert len(api_a.get("/api/v1/invoices/", {"page_size": 501}).json()["results"]) == 500


def test_openapi_documents_the_list_parameters(api_a):
    text = api_a.get(reverse("api:schema"), {"format": "json"}).content.decode()
    for path in ("/api/v1/invoices/", "/api/v1/payments/", "/api/v1/customers/"):
        assert path in text
    assert text.count('"name": "ordering"') >= 3
    assert text.count('"name": "from"') >= 2 and text.count('"name": "to"') >= 2
