"""Every signed-in page at phone width (390 px) and desktop width (1366 px), in Chromium (issue 17,
item 2): the page never scrolls sideways (tables scroll inside their cards), the side menu folds
behind a Menu button under 800 px, and every action stays reachable (Delete on Payments once
could not be clicked)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from payments.models import Payment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = [
    "/",
    "/invoices/",
    "/customers/",
    "/payments/",
    "/payments/drift/",
    "/integrations/",
    "/preferences/",
    "/sync-history/",
]


@pytest.fixture
def data(partner_a, make_invoice):
    invoice = make_invoice(
        partner_a,
        number="INV-WIDE-2026-000123456",
        total="12345.67",
        due_date=timezone.localdate(),
    )
    Payment.objects.create(
        partner=partner_a,
        invoice=invoice,
        amount=Decimal("10.00"),
        currency="USD",
        received_at=timezone.now(),
        note="A long note that should not widen the page " * 2,
    )
    return invoice


def page_width(page) -> int:
    return page.evaluate("document.scrollingElement.scrollWidth")


def test_phone_width_pages_never_scroll_sideways_and_the_menu_folds(page, login, user_a, data):
    page.set_viewport_size({"width": 390, "height": 844})
    login(user_a.username)
    for path in [*PAGES, f"/invoices/{data.pk}/"]:
        page.goto(path)
        assert page_width(page) <= 390, (path, page_width(page))
        assert page.locator("#nav-toggle").is_visible(), path
        assert not page.locator("#sidenav").is_visible(), path

    page.goto("/")
    page.click("#nav-toggle")
    assert page.locator("#sidenav").is_visible()
    assert page.locator("#nav-toggle").get_attribute("aria-expanded") == "true"
    page.locator("#sidenav").get_by_role("link", name="Payments").click()
    page.wait_for_load_state()
    assert page.url.endswith("/payments/")

    # The Delete button on Payments: reachable (scrolled into view inside its card) and works.
    delete = page.locator("#payments button", has_text="Delete").first
    delete.scroll_into_view_if_needed()
    assert delete.is_visible() and delete.is_enabled()
    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    page.wait_for_load_state()
    assert Payment.objects.get().status == "deleted"


def test_desktop_width_keeps_the_side_menu(page, login, user_a, data):
    page.set_viewport_size({"width": 1366, "height": 900})
    login(user_a.username)
    for path in PAGES:
        page.goto(path)
        assert page_width(page) <= 1366, (path, page_width(page))
        assert page.locator("#sidenav").is_visible(), path
        assert not page.locator("#nav-toggle").is_visible(), path
