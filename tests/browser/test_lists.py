"""The lists and the customer page in Chromium (issue 17, item 8): sorting by a header click,
a bad date typed into the URL, the customer page at 390 px (no sideways scroll, no serious axe
violation), and the Archive button asking first."""

from datetime import timedelta
from decimal import Decimal

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.utils import timezone

from customers.models import Customer
from payments.models import Payment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def data(partner_a, make_invoice):
    today = timezone.localdate()
    late = make_invoice(
        partner_a, number="INV-LIST-1", total="900.00", due_date=today - timedelta(3)
    )
    make_invoice(partner_a, customer=late.customer, number="INV-LIST-2", total="15.00")
    Payment.objects.create(
        partner=partner_a,
        invoice=late,
        amount=Decimal("100.00"),
        currency="USD",
        received_at=timezone.now(),
    )
    late.paid_here = Decimal("100.00")
    late.save(update_fields=["paid_here"])
    return late


def test_header_click_sorts_and_shows_the_direction(page, login, user_a, data):
    login(user_a.username)
    page.goto("/invoices/")
    page.locator("#invoices thead a", has_text="Total").click()
    page.wait_for_load_state()
    assert "sort=total" in page.url
    first = page.locator("#invoices tbody tr").first.inner_text()
    assert "INV-LIST-2" in first
    assert page.locator("#invoices th[aria-sort=ascending]").inner_text().startswith("Total")
    page.locator("#invoices thead a", has_text="Total").click()
    page.wait_for_load_state()
    assert "INV-LIST-1" in page.locator("#invoices tbody tr").first.inner_text()
    assert "$915.00" in page.locator("#totals").inner_text()

    page.goto("/invoices/?from=2026-02-31")
    assert "is not a date" in page.locator("#date-error").inner_text()


def test_customer_page_at_phone_width(page, login, user_a, data):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 390, "height": 844})
    login(user_a.username)
    page.goto(f"/invoices/customers/{data.customer_id}/")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    balance = page.locator("#balance").inner_text()
    assert "$815.00" in balance  # 800 still owed on INV-LIST-1 + 15
    assert "$800.00" in balance  # overdue
    violations = [
        v["id"]
        for v in Axe().run(page).response["violations"]
        if v["impact"] in {"critical", "serious"}
    ]
    assert violations == []
    assert errors == []


def test_archive_asks_first(page, login, user_a, data):
    login(user_a.username)
    page.goto("/customers/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#customers button", has_text="Archive").first.click()
    page.wait_for_timeout(300)
    assert not Customer.objects.filter(archived_at__isnull=False).exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#customers button", has_text="Archive").first.click()
    page.wait_for_load_state()
    assert Customer.objects.get(pk=data.customer_id).archived_at is not None
