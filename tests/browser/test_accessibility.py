"""The partner pages a new user sees first, in Chromium (issue 17, "Done when"): axe-core
(bundled by axe-playwright-python, no CDN) reports no critical or serious violation, no page
logs a console error or throws, the invoices list shows a status on every row and the home
page shows the outstanding total and the last sync."""

from datetime import timedelta
from decimal import Decimal

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.utils import timezone

from payments.models import Payment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def data(partner_a, make_invoice):
    today = timezone.localdate()
    paid = make_invoice(
        partner_a, number="INV-A11Y-1", total="250.00", paid_here="250.00", due_date=today
    )
    Payment.objects.create(
        partner=partner_a,
        invoice=paid,
        amount=Decimal("250.00"),
        currency="USD",
        received_at=timezone.now(),
    )
    make_invoice(partner_a, number="INV-A11Y-2", total="1200.50", due_date=today - timedelta(9))
    make_invoice(partner_a, number="INV-A11Y-3", total="80.00", due_date=today + timedelta(20))
    return paid


def serious(results) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in {"critical", "serious"}
    ]


def test_first_pages_have_no_serious_accessibility_violation_and_no_console_error(
    page, login, user_a, data
):
    errors: list[str] = []
    page.on(
        "console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    axe = Axe()

    page.goto("/accounts/login/")
    assert serious(axe.run(page)) == [], "login"
    login(user_a.username)
    pages = [
        "/",
        "/invoices/",
        f"/invoices/{data.pk}/",
        "/integrations/autotask/connect/",
        "/preferences/",
        "/payments/",
        "/customers/",
        "/integrations/",
    ]
    for width in (1366, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in pages:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            assert serious(axe.run(page)) == [], (width, path)
    assert errors == []


def test_invoices_list_shows_a_status_on_every_row_and_home_shows_totals(page, login, user_a, data):
    login(user_a.username)
    page.goto("/invoices/")
    rows = page.locator("table tbody tr")
    assert rows.count() == 3
    statuses = [rows.nth(i).locator(".badge").first.inner_text().strip() for i in range(3)]
    assert all(statuses), statuses
    assert "Paid" in statuses and "Overdue" in statuses

    page.goto("/")
    body = page.locator("main").inner_text()
    # Outstanding = the two unpaid invoices, money formatted with its currency.
    assert "$1,280.50" in body, body
    assert "sync" in body.lower()
