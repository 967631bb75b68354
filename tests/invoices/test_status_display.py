"""The invoice status as partners see it (issue 17, item 3): the list's Status column, the badge
on the invoice page and the API's `status_label` name every state, with its colour. The status
is a generated column without `get_status_display`: once every row showed a blank badge."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice

pytestmark = pytest.mark.django_db
BADGE = re.compile(r'<span class="badge (\w+)">([^<]+)</span>')


@pytest.fixture
def one_of_each(partner_a, make_invoice):
    today = timezone.localdate()
    later, earlier = today + timedelta(days=10), today - timedelta(days=3)
    made = {
        "open": make_invoice(partner_a, number="S-OPEN", due_date=later),
        "partial": make_invoice(
            partner_a, number="S-PART", due_date=later, paid_here=Decimal("40.00")
        ),
        "paid": make_invoice(
            partner_a, number="S-PAID", due_date=earlier, paid_in_autotask_on=today
        ),
        "void": make_invoice(partner_a, number="S-VOID", due_date=earlier, voided=True),
        "overdue": make_invoice(partner_a, number="S-LATE", due_date=earlier),
    }
    return {k: Invoice.objects.get(pk=v.pk) for k, v in made.items()}


EXPECTED = {
    "open": ("info", "Open"),
    "partial": ("warn", "Partially paid"),
    "paid": ("good", "Paid"),
    "void": ("muted", "Void"),
    "overdue": ("bad", "Overdue"),
}


def test_every_status_has_a_label_and_a_colour(one_of_each):
    for key, invoice in one_of_each.items():
        assert (invoice.status_badge, invoice.status_label) == EXPECTED[key], key


def test_the_list_and_the_invoice_page_show_the_status(client_a, one_of_each):
    page = client_a.get(reverse("invoices:list")).content.decode()
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r"<tr><td><a[^>]*>(S-\w+)</a>.*?</tr>", page, re.S)
    }
    for key, invoice in one_of_each.items():
        badges = BADGE.findall(rows[invoice.number])
        assert EXPECTED[key] in badges, (key, badges)
        detail = client_a.get(reverse("invoices:detail", args=[invoice.pk])).content.decode()
        assert EXPECTED[key] in BADGE.findall(detail), key


def test_the_api_gives_the_label_and_overdue(api_a, one_of_each):
    body = api_a.get("/api/v1/invoices/", {"page_size": 50}).json()
    by_number = {row["number"]: row for row in body["results"]}
    for key, invoice in one_of_each.items():
        row = by_number[invoice.number]
        assert row["status_label"] == EXPECTED[key][1], key
        assert row["overdue"] is (key == "overdue")
