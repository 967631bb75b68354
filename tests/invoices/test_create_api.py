"""`POST /api/v1/invoices/` refuses what the dashboard's New invoice form refuses, with the
field named, and stores nothing (R7 records created here)."""

import pytest

from invoices.models import Invoice

pytestmark = pytest.mark.django_db

# The customer is created here without a currency, so the invoice names its own.
GOOD = {"number": "LOCAL-9", "invoice_date": "2026-02-01", "total": "50.00", "currency": "USD"}


@pytest.fixture
def customer_id(api_a):
    r = api_a.post("/api/v1/customers/", {"name": "Walk-in Ltd"}, format="json")
    assert r.status_code == 201
    return r.json()["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"total": "0"}, "total"),
        ({"total": "-1.00"}, "total"),
        ({"total": "1.001"}, "total"),
        ({"total": "NaN"}, "total"),
        ({"tax": "60.00"}, "tax"),
        ({"tax": "-0.01"}, "tax"),
        ({"due_date": "2026-01-31"}, "due_date"),
        ({"invoice_date": "2026-02-30"}, "invoice_date"),
        ({"currency": "US"}, "currency"),
        ({"currency": "U$D"}, "currency"),
        ({"number": ""}, "number"),
    ],
)
def test_bad_invoice_is_refused_with_the_field_named_and_nothing_stored(
    api_a, customer_id, change, field
):
    r = api_a.post(
        "/api/v1/invoices/", {**GOOD, "customer_id": customer_id, **change}, format="json"
    )
    assert r.status_code == 400, r.content
    assert field in str(r.json()), r.json()
    assert not Invoice.objects.exists()


def test_a_good_invoice_is_stored_with_its_currency_upper_cased(api_a, customer_id):
    body = {**GOOD, "customer_id": customer_id, "tax": "50.00", "currency": "eur"}
    body["due_date"] = body["invoice_date"]
    r = api_a.post("/api/v1/invoices/", body, format="json")
    assert r.status_code == 201, r.content
    invoice = Invoice.objects.get()
    assert (invoice.source, invoice.currency, str(invoice.tax)) == ("local", "EUR", "50.00")


def test_idempotency_key_makes_a_retried_create_one_invoice_and_one_customer(api_a, customer_id):
    from customers.models import Customer

    body = {**GOOD, "customer_id": customer_id}
    first = api_a.post("/api/v1/invoices/", body, format="json", HTTP_IDEMPOTENCY_KEY="inv-1")
    again = api_a.post("/api/v1/invoices/", body, format="json", HTTP_IDEMPOTENCY_KEY="inv-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Invoice.objects.count() == 1
    other = api_a.post(
        "/api/v1/invoices/", {**body, "total": "51.00"}, format="json", HTTP_IDEMPOTENCY_KEY="inv-1"
    )
    assert other.status_code == 422 and Invoice.objects.count() == 1

    customers = Customer.objects.count()
    for _ in range(2):
        r = api_a.post(
            "/api/v1/customers/", {"name": "Once Ltd"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1"
        )
        assert r.status_code == 201
    assert Customer.objects.count() == customers + 1


def test_a_refused_create_is_replayed_as_refused_and_stores_nothing(api_a, customer_id):
    body = {**GOOD, "customer_id": customer_id, "total": "0"}
    for _ in range(2):
        r = api_a.post("/api/v1/invoices/", body, format="json", HTTP_IDEMPOTENCY_KEY="bad-1")
        assert r.status_code == 400 and "total" in str(r.json())
    assert not Invoice.objects.exists()
