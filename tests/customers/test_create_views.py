"""Dashboard pages that create customers here (issue 11 #5, R7): the New customer form, its
field errors (nothing stored) and the customers list linking to it. Permissions, tenancy and
the New invoice form: tests/invoices/test_create_views.py."""

import pytest

from customers.models import Customer
from tests.invoices.test_create_views import NEW_CUSTOMER, counts, field_errors, new_invoice_for

pytestmark = pytest.mark.django_db


def test_new_customer_page_is_linked_from_the_customers_list(client_a):
    page = client_a.get("/customers/").content.decode()
    assert f'href="{NEW_CUSTOMER}"' in page


def test_creating_a_customer_stores_a_local_row_redirects_and_lists_it(client_a, partner_a):
    r = client_a.post(
        NEW_CUSTOMER,
        {"name": "  Zeta Dental  ", "email": "billing@zeta.test", "city": "Reno", "number": "Z-7"},
    )
    assert r.status_code == 302
    assert r["Location"] == "/customers/?q=Zeta+Dental"
    customer = Customer.objects.get()
    assert (customer.partner, customer.name, customer.source, customer.autotask_id) == (
        partner_a,
        "Zeta Dental",
        "local",
        None,
    )
    assert (customer.email, customer.city, customer.number) == ("billing@zeta.test", "Reno", "Z-7")
    page = client_a.get(r["Location"]).content.decode()
    assert "Customer Zeta Dental created here. It is never sent to Autotask." in page
    assert "Zeta Dental" in page and "Created here" in page
    assert f'href="{new_invoice_for(customer)}"' in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "name", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
        ({"name": "x" * 256}, "name", "Ensure this value has at most 255 characters"),
        ({"name": "Zeta", "email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"name": "Zeta", "postal_code": "9" * 31}, "postal_code", "at most 30 characters"),
    ],
)
def test_bad_customer_input_shows_the_form_with_field_errors_and_stores_nothing(
    client_a, partner_a, data, field, message
):
    r = client_a.post(NEW_CUSTOMER, data)
    assert r.status_code == 200
    assert any(message in e for e in field_errors(r, field)), r.context["form"].errors
    assert f'id="error-{field}"' in r.content.decode()
    assert counts() == (0, 0)
