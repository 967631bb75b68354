"""A customer and an invoice created here through the dashboard, in a real browser (issue 11
#5, R7): from the customers list to the new customer's row, to its new invoice, with a field
error on the way."""

import pytest

from invoices.models import Invoice

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_a_customer_then_an_invoice_for_it_from_its_row(page, login, user_a, partner_a):
    login(user_a.username)
    page.goto("/customers/")
    page.click("#new-customer")
    page.fill("#id_name", "Zeta Dental")
    page.fill("#id_email", "billing@zeta.test")
    page.click("#customer-form button[type=submit]")
    page.wait_for_load_state()
    assert "Customer Zeta Dental created here" in page.locator(".messages").inner_text()
    row = page.locator("#customers tr", has_text="Zeta Dental")
    assert "Created here" in row.inner_text()

    row.get_by_role("link", name="New invoice").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "New invoice for Zeta Dental"
    page.fill("#id_number", "LOCAL-77")
    page.fill("#id_total", "-3")
    page.click("#invoice-form button[type=submit]")
    page.wait_for_load_state()
    assert "greater than 0" in page.locator("#error-total").inner_text()
    assert not Invoice.objects.exists()

    page.fill("#id_total", "49.90")
    page.fill("#id_currency", "USD")  # the customer was created here, without a currency
    page.click("#invoice-form button[type=submit]")
    page.wait_for_load_state()
    assert "Invoice LOCAL-77 created here" in page.locator(".messages").inner_text()
    invoice = Invoice.objects.get()
    assert (invoice.partner_id, invoice.source, invoice.autotask_id) == (
        partner_a.pk,
        "local",
        None,
    )
    assert page.url.endswith(f"/invoices/{invoice.pk}/")

    page.goto("/invoices/")
    listed = page.locator("#invoices tr", has_text="LOCAL-77").inner_text()
    assert "Zeta Dental" in listed and "$49.90" in listed and "created here" in listed
