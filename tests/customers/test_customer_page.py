"""The customer's page (issue 17, item 8): contact details, balance per currency (outstanding,
overdue, paid), its invoices and recent payments; another partner's customer answers 404."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from payments.models import Payment
from tests.factories import create_customer, create_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(partner_a):
    c = create_customer(
        partner_a,
        name="Northwind Traders",
        number="CUST-42",
        email="ap@northwind.test",
        phone="+1 555 0100",
        city="Seattle",
        currency="USD",
    )
    today = date.today()
    late = create_invoice(
        partner_a, customer=c, number="NW-1", total="100.00", due_date=today - timedelta(days=5)
    )
    create_invoice(
        partner_a, customer=c, number="NW-2", total="40.00", due_date=today + timedelta(days=5)
    )
    create_invoice(partner_a, customer=c, number="NW-3", total="60.00", paid_in_autotask_on=today)
    create_invoice(partner_a, customer=c, number="NW-VOID", total="999.00", voided=True)
    create_invoice(
        partner_a,
        customer=c,
        number="NW-ARCH",
        total="777.00",
        archived_at="2026-01-01T00:00:00Z",
    )
    Payment.objects.create(
        partner=partner_a, invoice=late, amount="25.00", received_at="2026-06-01T12:00:00Z"
    )
    late.paid_here = Decimal("25.00")
    late.save(update_fields=["paid_here"])
    return c


def test_page_shows_contact_and_balance(client_a, customer):
    response = client_a.get(reverse("customers:detail", args=[customer.pk]))
    assert response.status_code == 200
    [usd] = response.context["balance"]
    # Outstanding: NW-1 75 (100 - 25 paid here) + NW-2 40; overdue: NW-1 only; paid: 25 + 60.
    assert usd["currency"] == "USD"
    assert usd["owed"] == Decimal("115.00")
    assert usd["overdue"] == Decimal("75.00")
    assert usd["paid"] == Decimal("85.00")
    body = response.content.decode()
    for text in ("Northwind Traders", "CUST-42", "ap@northwind.test", "+1 555 0100", "Seattle"):
        assert text in body
    assert "$115.00" in body and "$75.00" in body and "$85.00" in body
    assert "$999.00" not in body.split('id="customer-invoices"')[0]  # void left out of balance


def test_page_lists_invoices_with_links_and_badges(client_a, customer):
    response = client_a.get(reverse("customers:detail", args=[customer.pk]))
    body = response.content.decode()
    numbers = {inv.number for inv in response.context["invoices"]}
    assert numbers == {"NW-1", "NW-2", "NW-3", "NW-VOID", "NW-ARCH"}
    nw1 = next(inv for inv in response.context["invoices"] if inv.number == "NW-1")
    assert reverse("invoices:detail", args=[nw1.pk]) in body
    assert ">Overdue<" in body and ">Paid<" in body and ">Void<" in body


def test_page_lists_recent_payments(client_a, customer, partner_a):
    other = create_invoice(partner_a, number="ELSEWHERE")
    Payment.objects.create(
        partner=partner_a, invoice=other, amount="3.00", received_at="2026-06-02T12:00:00Z"
    )
    response = client_a.get(reverse("customers:detail", args=[customer.pk]))
    assert [p.amount for p in response.context["payments"]] == [Decimal("25.00")]
    assert "$25.00" in response.content.decode()


def test_customer_without_invoices(client_a, partner_a):
    lone = create_customer(partner_a, name="Lonely Co")
    response = client_a.get(reverse("customers:detail", args=[lone.pk]))
    assert response.status_code == 200 and response.context["balance"] == []
    assert "No invoices yet." in response.content.decode()


def test_other_partners_customer_is_404(client_b, customer):
    response = client_b.get(reverse("customers:detail", args=[customer.pk]))
    assert response.status_code == 404
    assert "Northwind" not in response.content.decode()


def test_list_links_to_the_page(client_a, customer):
    body = client_a.get(reverse("dashboard:customers")).content.decode()
    assert f'href="{reverse("customers:detail", args=[customer.pk])}"' in body
