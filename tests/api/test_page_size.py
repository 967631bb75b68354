"""`?page_size=` on every API list (issue 17: it was ignored): 1 to 500 rows, default 50; more
than 500 gives 500; a value that is not an integer of at least 1 is a 400 naming the parameter
(issue 18: never silently the default)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(partner_a, partner_b, make_invoice):
    for _ in range(60):
        make_invoice(partner_a)
    make_invoice(partner_b)


@pytest.mark.parametrize("size, rows", [(None, 50), ("5", 5), ("60", 60), ("1000", 60)])
def test_page_size_on_the_invoice_list(api_a, many, size, rows):
    params = {"page_size": size} if size else {}
    body = api_a.get("/api/v1/invoices/", params).json()
    assert body["count"] == 60  # A's invoices only
    assert len(body["results"]) == rows


@pytest.mark.parametrize("size", ["x", "0", "-1", "null", "1.5", str(2**63)])
def test_a_bad_page_size_is_a_400_naming_it(api_a, many, size):
    response = api_a.get("/api/v1/invoices/", {"page_size": size})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert response.json()["parameter"] == "page_size"


def test_page_size_on_customers_and_payments(api_a, many):
    assert len(api_a.get("/api/v1/customers/", {"page_size": 7}).json()["results"]) == 7
    assert api_a.get("/api/v1/payments/", {"page_size": 7}).status_code == 200
