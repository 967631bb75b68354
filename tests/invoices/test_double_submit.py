"""A New customer / New invoice form sent twice (a double click, a retried POST) creates one
row: each rendering carries a one-time token kept in the Idempotency-Key store."""

import pytest

from customers.models import Customer
from invoices.models import Invoice

from .test_create_views import NEW_CUSTOMER, NEW_INVOICE, invoice_data, make_customer

pytestmark = pytest.mark.django_db


def token_of(client, url) -> str:
    token = client.get(url).context["submit_token"]
    assert len(token) == 32
    return token


def test_a_customer_form_sent_twice_creates_one_customer(client_a, partner_a):
    token = token_of(client_a, NEW_CUSTOMER)
    data = {"name": "Twice Ltd", "submit_token": token}
    first = client_a.post(NEW_CUSTOMER, data)
    second = client_a.post(NEW_CUSTOMER, data)
    assert first.status_code == second.status_code == 302
    assert second["Location"] == first["Location"]
    assert Customer.objects.filter(partner=partner_a, name="Twice Ltd").count() == 1
    # A new rendering has a new token: a second customer of the same name is still possible.
    assert token_of(client_a, NEW_CUSTOMER) != token


def test_an_invoice_form_with_errors_frees_its_token_for_the_corrected_one(client_a, partner_a):
    customer = make_customer(partner_a, "Acme")
    token = token_of(client_a, NEW_INVOICE)
    bad = client_a.post(NEW_INVOICE, {**invoice_data(customer, total="0"), "submit_token": token})
    assert bad.status_code == 200 and bad.context["submit_token"] == token
    assert not Invoice.objects.exists()
    good = {**invoice_data(customer), "submit_token": token}
    first, second = client_a.post(NEW_INVOICE, good), client_a.post(NEW_INVOICE, good)
    assert first.status_code == second.status_code == 302
    assert second["Location"] == first["Location"]
    assert Invoice.objects.filter(partner=partner_a).count() == 1


def test_a_form_without_a_token_still_works(client_a, partner_a):
    assert client_a.post(NEW_CUSTOMER, {"name": "No Token"}).status_code == 302
    assert client_a.post(NEW_CUSTOMER, {"name": "No Token"}).status_code == 302
    assert Customer.objects.filter(partner=partner_a, name="No Token").count() == 2
