"""Dashboard pages that create customers and invoices here (issue 11 #5, R7): the forms, their
field errors (nothing stored), tenancy, who may create, and that nothing created here is ever
sent to Autotask. The New customer form alone: tests/customers/test_create_views.py."""

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from config.api import DomainError
from customers.models import Customer
from invoices.models import Invoice
from partners.models import User
from payments.models import WritebackOutbox
from tests.payments.helpers import writeback_drain

pytestmark = pytest.mark.django_db

NEW_CUSTOMER = "/invoices/customers/new/"
NEW_INVOICE = "/invoices/new/"


def new_invoice_for(customer):
    return f"/invoices/customers/{customer.pk}/new-invoice/"


def make_customer(partner, name, **kw):
    return Customer.objects.create(partner=partner, source="local", name=name, **kw)


def counts(partner=None):
    customers, invoices = Customer.objects.all(), Invoice.objects.all()
    if partner is not None:
        customers, invoices = customers.filter(partner=partner), invoices.filter(partner=partner)
    return customers.count(), invoices.count()


def invoice_data(customer, /, **overrides):
    data = {
        "customer": customer.pk,
        "number": "LOCAL-1",
        "invoice_date": "2026-03-01",
        "due_date": "2026-03-31",
        "total": "120.50",
        "tax": "20.50",
        "currency": "usd",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def field_errors(response, field):
    return response.context["form"].errors.get(field, [])


# --- invoices -------------------------------------------------------------------------------


def test_new_invoice_is_linked_from_the_invoices_list_and_from_open_customer_rows(
    client_a, partner_a
):
    open_customer = make_customer(partner_a, "Open Co")
    archived = make_customer(partner_a, "Archived Co", archived_at="2026-01-01T00:00:00Z")
    assert f'href="{NEW_INVOICE}"' in client_a.get("/invoices/").content.decode()
    page = client_a.get("/customers/?archived=all").content.decode()
    assert f'href="{new_invoice_for(open_customer)}"' in page
    assert f'href="{new_invoice_for(archived)}"' not in page


def test_creating_an_invoice_stores_a_local_row_redirects_and_lists_it(client_a, partner_a):
    customer = make_customer(partner_a, "Zeta Dental")
    r = client_a.post(NEW_INVOICE, invoice_data(customer))
    invoice = Invoice.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/invoices/{invoice.pk}/"
    assert (invoice.partner, invoice.customer, invoice.source, invoice.autotask_id) == (
        partner_a,
        customer,
        "local",
        None,
    )
    assert (invoice.number, invoice.invoice_date, invoice.due_date) == (
        "LOCAL-1",
        date(2026, 3, 1),
        date(2026, 3, 31),
    )
    assert (invoice.total, invoice.tax, invoice.currency) == (
        Decimal("120.50"),
        Decimal("20.50"),
        "USD",
    )
    assert (invoice.status, invoice.outstanding) == ("open", Decimal("120.50"))
    detail = client_a.get(r["Location"]).content.decode()
    assert "Invoice LOCAL-1 created here. It is never sent to Autotask." in detail
    listing = client_a.get("/invoices/").content.decode()
    assert "LOCAL-1" in listing and "created here" in listing and "$120.50" in listing


def test_invoice_without_due_date_or_tax_is_due_on_its_date_with_no_tax(client_a, partner_a):
    customer = make_customer(partner_a, "Zeta Dental")
    r = client_a.post(NEW_INVOICE, invoice_data(customer, due_date="", tax="", total="15"))
    assert r.status_code == 302
    invoice = Invoice.objects.get()
    assert (invoice.due_date, invoice.tax, invoice.total) == (
        date(2026, 3, 1),
        Decimal("0.00"),
        Decimal("15.00"),
    )


def test_the_customer_row_link_preselects_that_customer_and_creates_for_it(client_a, partner_a):
    make_customer(partner_a, "Other Co")
    customer = make_customer(partner_a, "Zeta Dental")
    r = client_a.get(new_invoice_for(customer))
    assert r.status_code == 200
    assert r.context["form"]["customer"].value() == customer.pk
    assert "New invoice for Zeta Dental" in r.content.decode()
    r = client_a.post(new_invoice_for(customer), invoice_data(customer))
    assert r.status_code == 302
    assert Invoice.objects.get().customer == customer


def test_the_customer_choices_are_the_partners_open_customers_only(client_a, partner_a, partner_b):
    mine = make_customer(partner_a, "Mine Open")
    make_customer(partner_a, "Mine Archived", archived_at="2026-01-01T00:00:00Z")
    make_customer(partner_b, "Bravo Secret Customer")
    r = client_a.get(NEW_INVOICE)
    assert list(r.context["form"].fields["customer"].queryset) == [mine]
    page = r.content.decode()
    assert "Mine Open" in page
    assert "Mine Archived" not in page and "Bravo Secret Customer" not in page


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"total": "0"}, "total", "Enter an amount greater than 0."),
        ({"total": "-5.00"}, "total", "Enter an amount greater than 0."),
        ({"total": "10.555"}, "total", "no more than 2 decimal places"),
        ({"total": "abc"}, "total", "Enter a number."),
        ({"total": "NaN"}, "total", "Enter a number."),
        ({"total": "Infinity"}, "total", "Enter a number."),
        ({"total": "1e20"}, "total", "no more than 14 digits"),
        ({"total": None}, "total", "This field is required."),
        ({"tax": "-1"}, "tax", "Tax cannot be negative."),
        ({"tax": "200.00"}, "tax", "Tax cannot be more than the total"),
        ({"due_date": "2026-02-30"}, "due_date", "Enter a valid date."),
        ({"due_date": "soon"}, "due_date", "Enter a valid date."),
        ({"due_date": "2026-02-28"}, "due_date", "cannot be before the invoice date"),
        ({"invoice_date": None}, "invoice_date", "This field is required."),
        ({"invoice_date": "2026-13-01"}, "invoice_date", "Enter a valid date."),
        ({"number": "  "}, "number", "This field is required."),
        ({"number": "N" * 101}, "number", "at most 100 characters"),
        ({"currency": "US1"}, "currency", "three-letter currency code"),
        ({"currency": "US"}, "currency", "at least 3 characters"),
        ({"customer": None}, "customer", "This field is required."),
        ({"customer": "abc"}, "customer", "Choose one of your customers"),
        ({"customer": "99999999999999999999"}, "customer", "Choose one of your customers"),
    ],
)
def test_bad_invoice_input_shows_the_form_with_field_errors_and_stores_nothing(
    client_a, partner_a, overrides, field, message
):
    customer = make_customer(partner_a, "Zeta Dental")
    r = client_a.post(NEW_INVOICE, invoice_data(customer, **overrides))
    assert r.status_code == 200
    assert any(message in e for e in field_errors(r, field)), r.context["form"].errors
    assert f'id="error-{field}"' in r.content.decode()
    assert counts() == (1, 0)


def test_an_archived_customer_cannot_be_invoiced(client_a, partner_a):
    customer = make_customer(partner_a, "Gone Co", archived_at="2026-01-01T00:00:00Z")
    r = client_a.post(NEW_INVOICE, invoice_data(customer))
    assert r.status_code == 200
    assert field_errors(r, "customer") == [
        "Choose one of your customers (archived customers cannot be invoiced)."
    ]
    assert client_a.get(new_invoice_for(customer)).status_code == 404
    assert client_a.post(new_invoice_for(customer), invoice_data(customer)).status_code == 404
    assert counts() == (1, 0)


def test_a_customer_archived_while_the_form_is_sent_is_a_field_error(
    client_a, partner_a, monkeypatch
):
    """The service re-checks under its own query; its refusal becomes the customer's error."""
    customer = make_customer(partner_a, "Zeta Dental")

    def archived_meanwhile(**kwargs):
        raise DomainError("The customer is archived.", code="customer_archived", status_code=409)

    monkeypatch.setattr("invoices.services.invoice_create_local", archived_meanwhile)
    r = client_a.post(NEW_INVOICE, invoice_data(customer))
    assert r.status_code == 200
    assert field_errors(r, "customer") == ["The customer is archived."]
    assert counts() == (1, 0)


# --- CSRF, roles, tenancy -------------------------------------------------------------------


def test_posts_without_a_csrf_token_are_refused(user_a, partner_a):
    customer = make_customer(partner_a, "Zeta Dental")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user_a)
    assert browser.post(NEW_CUSTOMER, {"name": "Sneaky"}).status_code == 403
    assert browser.post(NEW_INVOICE, invoice_data(customer)).status_code == 403
    assert counts() == (1, 0)
    # The form itself carries the token.
    assert 'name="csrfmiddlewaretoken"' in browser.get(NEW_INVOICE).content.decode()


@pytest.mark.parametrize("role", [User.Role.OWNER, User.Role.ADMIN, User.Role.MEMBER])
def test_every_partner_role_that_may_archive_may_also_create(client, make_user, partner_a, role):
    """The same permission as the archive views: any user of the partner."""
    client.force_login(make_user(partner_a, role=role))
    assert client.post(NEW_CUSTOMER, {"name": f"By {role}"}).status_code == 302
    customer = Customer.objects.get(name=f"By {role}")
    assert client.post(NEW_INVOICE, invoice_data(customer)).status_code == 302
    other = make_customer(partner_a, "To archive")
    assert client.post(f"/invoices/customers/{other.pk}/archive/").status_code == 302
    assert counts(partner_a) == (2, 1)


def test_staff_without_a_partner_and_anonymous_users_cannot_create(client, partner_a):
    customer = make_customer(partner_a, "Zeta Dental")
    for path in (NEW_CUSTOMER, NEW_INVOICE, new_invoice_for(customer)):
        r = client.get(path)
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
        r = client.post(path, {"name": "Anon", **invoice_data(customer)})
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    staff = User.objects.create_user(username="ops", password="pw-for-tests-1", is_staff=True)
    client.force_login(staff)
    for path in (NEW_CUSTOMER, NEW_INVOICE, new_invoice_for(customer)):
        assert client.get(path).status_code == 403
        assert client.post(path, {"name": "Ops", **invoice_data(customer)}).status_code == 403
    assert counts() == (1, 0)


def test_partner_b_cannot_invoice_as_customer_of_a_and_never_sees_as_new_rows(
    client, user_a, user_b, user_c, partner_a, partner_b, partner_c
):
    bystander = make_customer(partner_c, "Charlie Customer")
    client.force_login(user_a)
    client.post(NEW_CUSTOMER, {"name": "Alpha Private Customer"})
    a_customer = Customer.objects.get(partner=partner_a)
    client.post(NEW_INVOICE, invoice_data(a_customer, number="ALPHA-LOCAL-1"))
    assert counts(partner_a) == (1, 1)
    c_before = list(Customer.objects.filter(partner=partner_c).values())

    client.force_login(user_b)
    # A's customer id in B's form: not one of B's choices, a field error; nothing stored.
    r = client.post(NEW_INVOICE, invoice_data(a_customer, number="BRAVO-STEAL"))
    assert r.status_code == 200
    assert field_errors(r, "customer") == [
        "Choose one of your customers (archived customers cannot be invoiced)."
    ]
    # A's customer on the per-customer route: 404 for every method that could write.
    assert client.get(new_invoice_for(a_customer)).status_code == 404
    assert client.post(new_invoice_for(a_customer), invoice_data(a_customer)).status_code == 404
    assert client.put(new_invoice_for(a_customer)).status_code == 404
    assert counts(partner_b) == (0, 0)
    assert Invoice.objects.get().customer == a_customer
    # B's pages show nothing of A's new rows.
    for path in ("/invoices/", "/customers/", NEW_INVOICE, "/customers/?q=Alpha"):
        page = client.get(path).content.decode()
        assert "Alpha Private Customer" not in page and "ALPHA-LOCAL-1" not in page, path
    assert Customer.objects.get(partner=partner_c) == bystander
    assert list(Customer.objects.filter(partner=partner_c).values()) == c_before
    assert counts(partner_c) == (1, 0)


# --- R7: never sent to Autotask -------------------------------------------------------------


def test_a_local_invoice_paid_in_full_is_never_written_back_to_autotask(
    client_a, partner_a, connect, run_now, autotask_sandbox
):
    """A partner connected to Autotask creates a customer and an invoice here and records a
    full payment: no outbox row, no request to Autotask at all. A later sync leaves both rows
    as they are (no Autotask id, so nothing to match or to flag as missing)."""
    conn = connect(partner_a)
    db = autotask_sandbox.db
    db.reset_counters()

    client_a.post(NEW_CUSTOMER, {"name": "Zeta Dental"})
    customer = Customer.objects.get(partner=partner_a, source="local")
    client_a.post(NEW_INVOICE, invoice_data(customer, total="75.00", tax="0"))
    invoice = Invoice.objects.get(partner=partner_a, source="local")
    r = client_a.post(
        f"/payments/invoice/{invoice.pk}/record/", {"amount": "75.00", "method": "card"}
    )
    assert r.status_code == 302
    invoice.refresh_from_db()
    assert (invoice.status, invoice.outstanding) == ("paid", Decimal("0.00"))
    assert not WritebackOutbox.objects.filter(invoice=invoice).exists()
    assert writeback_drain(partner=partner_a) == []
    assert db.requests() == []

    local_before = (
        Customer.objects.filter(pk=customer.pk).values().get(),
        Invoice.objects.filter(pk=invoice.pk).values().get(),
    )
    assert run_now(conn.first_run).status == "succeeded"
    assert db.requests()  # the sync did talk to Autotask: reads only
    writes = [
        r
        for r in db.requests()
        if r["method"] != "GET" and not r["path"].rstrip("/").endswith(("/query", "/query/count"))
    ]
    assert writes == []
    assert (
        Customer.objects.filter(pk=customer.pk).values().get(),
        Invoice.objects.filter(pk=invoice.pk).values().get(),
    ) == local_before
