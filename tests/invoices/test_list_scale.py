"""Lists at scale (issue 19, item 5; invoices/selectors.py): every list query is led by the
partner on its index, the dashboard's count and totals stop at LIST_CAP rows and say so, and
the duplicate-number flag probes the page's rows only.

The plans are asked of PostgreSQL with sequential scans and explicit sorts priced out
(`enable_seqscan`/`enable_sort` off, in a transaction), so a few rows are enough: a list whose
index is gone (or whose order no index gives) shows a Seq Scan or a Sort and fails.
"""

import re
from datetime import date

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from invoices import selectors, views
from invoices.models import Invoice
from invoices.selectors import capped_totals, invoice_list
from tests.factories import create_customer, create_invoice

pytestmark = pytest.mark.django_db

# URL sort → the index that must give the page's order.
SORT_INDEX = {
    "": "invoice_partner_date",
    "-invoice_date": "invoice_partner_date",
    "invoice_date": "invoice_partner_date",
    "due_date": "invoice_partner_due_cover",
    "-due_date": "invoice_partner_due_cover",
    "total": "invoice_partner_total",
    "-total": "invoice_partner_total",
    "outstanding": "invoice_partner_outstanding",
    "-outstanding": "invoice_partner_outstanding",
    "status": "invoice_partner_status_cover",
    "-status": "invoice_partner_status_cover",
}


def plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_sort = off")
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


@pytest.fixture
def rows(partner_a, partner_b):
    customer = create_customer(partner_a, name="Zeta Corp")
    for n in range(6):
        create_invoice(partner_a, customer=customer, number=f"INV-{n}", total=f"{100 + n}.00")
    create_invoice(partner_b, number="INV-0")
    with connection.cursor() as cur:
        cur.execute("ANALYZE invoices_invoice")
    return customer


@pytest.mark.parametrize("sort", sorted(SORT_INDEX))
def test_each_sort_reads_its_partner_led_index(rows, partner_a, sort):
    text = plan(invoice_list(partner=partner_a, sort=sort)[:50])
    assert "Seq Scan on invoices_invoice" not in text
    assert f"using {SORT_INDEX[sort]} on invoices_invoice" in text, text
    assert "partner_id = " in text


def test_status_filter_and_date_range_count_on_partner_led_indexes(rows, partner_a):
    # What capped_totals reads: no order, so any index led by the partner will do.
    for qs in (
        invoice_list(partner=partner_a, status="open"),
        invoice_list(partner=partner_a, date_from=date(2026, 1, 1), date_to=date(2026, 1, 31)),
        invoice_list(partner=partner_a, customer_id=rows.pk),
    ):
        text = plan(qs.order_by().values("currency", "total", "outstanding")[:10_001])
        assert "Seq Scan on invoices_invoice" not in text, text
        assert re.search(r"Index Cond: \(+partner_id = ", text), text


def test_search_index_is_the_partners_trigrams_of_the_upper_cased_number():
    # icontains compares UPPER(number) LIKE UPPER('%…%'): the index must be on that expression.
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'invoice_partner_number_trgm'"
        )
        (definition,) = cur.fetchone()
    assert "USING gin (partner_id, upper((number)::text) gin_trgm_ops)" in definition


def test_search_still_finds_by_customer_name_and_stays_in_the_partner(rows, partner_a, partner_b):
    other = create_customer(partner_b, name="Zeta Corp")
    create_invoice(partner_b, customer=other, number="B-9")
    found = invoice_list(partner=partner_a, search="zeta")
    assert {i.number for i in found} == {f"INV-{n}" for n in range(6)}
    assert not invoice_list(partner=partner_a, search="B-9").exists()


def test_capped_totals_are_exact_up_to_the_cap_and_refused_above(rows, partner_a):
    qs = invoice_list(partner=partner_a)
    totals, complete = capped_totals(qs, cap=6)
    assert complete
    assert [(t["currency"], t["n"], str(t["total"])) for t in totals] == [("USD", 6, "615.00")]
    _totals, complete = capped_totals(qs, cap=5)
    assert not complete


def test_list_page_above_the_cap_says_so_and_shows_no_totals(
    rows, partner_a, client_a, monkeypatch
):
    monkeypatch.setattr(selectors, "LIST_CAP", 4)
    monkeypatch.setattr(views, "LIST_CAP", 4)
    response = client_a.get(reverse("invoices:list"))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="list-capped"' in body
    assert "More than 4 invoices match" in body
    assert 'id="totals"' not in body
    page = response.context["page"]
    assert (page.paginator.count, page.paginator.capped, len(page)) == (4, True, 4)

    monkeypatch.setattr(selectors, "LIST_CAP", 6)
    monkeypatch.setattr(views, "LIST_CAP", 6)
    body = client_a.get(reverse("invoices:list")).content.decode()
    assert 'id="list-capped"' not in body
    assert 'id="totals"' in body
    assert "(6 invoices)" in body


def test_duplicate_flag_marks_only_numbers_shown_twice_by_the_partner(
    rows, partner_a, partner_b, client_a
):
    create_invoice(partner_a, customer=rows, number="INV-2")  # a second INV-2
    # partner_b also has an INV-0: not a duplicate for partner_a
    response = client_a.get(reverse("invoices:list"))
    flags = {inv.number: inv.duplicate_number for inv in response.context["page"]}
    assert flags["INV-2"] is True
    assert flags["INV-0"] is False
    assert sum(flags.values()) == 1
    assert response.content.decode().count("duplicate number") == 2
    assert Invoice.objects.for_partner(partner_a).filter(number="INV-2").count() == 2


def test_row_links_are_the_routes_of_the_invoice_its_pdf_and_its_customer(rows, client_a):
    response = client_a.get(reverse("invoices:list"))
    body = response.content.decode()
    for inv in response.context["page"]:
        assert f'href="{reverse("invoices:detail", args=[inv.pk])}"' in body
        assert f'href="{reverse("invoices:pdf", args=[inv.pk])}"' in body
        assert f'href="{reverse("customers:detail", args=[inv.customer_id])}"' in body


def test_customer_filter_options_are_escaped_and_keep_the_choice(rows, partner_a, client_a):
    odd = create_customer(partner_a, name="<b>Bold & Co</b>")
    body = client_a.get(reverse("invoices:list"), {"customer": odd.pk}).content.decode()
    assert f'<option value="{odd.pk}" selected>&lt;b&gt;Bold &amp; Co&lt;/b&gt;</option>' in body
    assert f'<option value="{rows.pk}">Zeta Corp</option>' in body
    assert "<b>Bold" not in body


def test_sort_by_customer_walks_the_partners_customers_by_name(rows, partner_a, partner_b):
    other = create_customer(partner_b, name="Aardvark Ltd")  # another partner's, first by name
    create_invoice(partner_b, customer=other, number="B-1")
    second = create_customer(partner_a, name="Alpha Inc")
    create_invoice(partner_a, customer=second, number="A-1")
    with connection.cursor() as cur:
        cur.execute("ANALYZE customers_customer")
    text = plan(invoice_list(partner=partner_a, sort="customer")[:50])
    # The customers' side is led by the partner too, on the (partner, name) index: no sort of
    # every partner's customers before the first row.
    assert re.search(r"on customers_customer\s.*\n\s+Index Cond: \(partner_id = ", text), text
    assert "Seq Scan on customers_customer" not in text
    names = [i.customer.name for i in invoice_list(partner=partner_a, sort="customer")]
    assert names == ["Alpha Inc", *["Zeta Corp"] * 6]
    backwards = [i.number for i in invoice_list(partner=partner_a, sort="-customer")]
    assert backwards == [*(f"INV-{n}" for n in range(5, -1, -1)), "A-1"]


def test_a_small_date_range_is_read_through_its_index_and_sorted(rows, partner_a):
    days = [date(2026, 3, d) for d in (5, 1, 9, 3, 7, 2)]
    for invoice, due in zip(invoice_list(partner=partner_a).order_by("id"), days, strict=True):
        Invoice.objects.filter(pk=invoice.pk).update(due_date=due)
    with connection.cursor() as cur:
        cur.execute("ANALYZE invoices_invoice")
    qs = invoice_list(
        partner=partner_a, date_field="due", date_from=date(2026, 3, 2), date_to=date(2026, 3, 8)
    )
    order = ("-invoice_date", "-id")
    sorted_range = selectors.sort_the_range(qs, order)
    assert list(sorted_range) == list(qs.order_by(*order))  # same rows, same order
    # The customers are not joined before the sort: the page's come in their own query.
    assert "customers_customer" not in str(sorted_range.query)
    with CaptureQueriesContext(connection) as queries:
        names = [invoice.customer.name for invoice in sorted_range.all()[:50]]
    assert len(queries) == 2 and names == [i.customer.name for i in qs.order_by(*order)]
    assert len(sorted_range) == 4
    with transaction.atomic(), connection.cursor() as cur:
        sql, params = sorted_range.all()[:50].query.sql_with_params()
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("EXPLAIN " + sql, params)
        text = "\n".join(row[0] for row in cur.fetchall())
    # The range's rows are sorted, the order's index is not walked (which index reads 6 rows
    # is the planner's choice; bench/list_scale.py shows the due-date index at scale).
    assert re.search(r"Sort Key: \(COALESCE\((invoices_invoice\.)?invoice_date, ", text), text
    assert "invoice_partner_date" not in text, text


def test_the_list_page_sorts_a_small_due_date_range_and_keeps_its_order(
    rows, partner_a, client_a, monkeypatch
):
    days = [date(2026, 3, d) for d in (5, 1, 9, 3, 7, 2)]
    for invoice, due in zip(invoice_list(partner=partner_a).order_by("id"), days, strict=True):
        Invoice.objects.filter(pk=invoice.pk).update(due_date=due)
    calls = []

    def spy(qs, order_by):
        calls.append(order_by)
        return selectors.sort_the_range(qs, order_by)

    monkeypatch.setattr(views, "sort_the_range", spy)
    params = {"dates": "due", "from": "2026-03-02", "to": "2026-03-08", "sort": "-total"}
    page = client_a.get(reverse("invoices:list"), params).context["page"]
    assert [str(i.total) for i in page] == ["105.00", "104.00", "103.00", "100.00"]
    assert calls == [("-total", "-id")]
    # Ordered by the range's own column: its index gives the order, nothing to sort.
    client_a.get(reverse("invoices:list"), {**params, "sort": "due_date"})
    assert calls == [("-total", "-id")]
