"""Dashboard pages: payments list, invoice payments and write-back status, record and delete
by hand, archive/unarchive, webhook settings."""

from decimal import Decimal

import pytest

from customers.models import Customer
from invoices.models import Invoice
from payments.models import Payment, WritebackOutbox
from payments.services import ledger, payment_settings

pytestmark = pytest.mark.django_db


def test_payments_page_lists_the_partners_payments_only(
    client_a, partner_a, partner_b, make_invoice
):
    ia, ib = make_invoice(partner_a, number="A-1"), make_invoice(partner_b, number="B-1")
    ledger.payment_record(partner=partner_a, invoice_id=ia.pk, amount=Decimal("12.34"))
    ledger.payment_record(partner=partner_b, invoice_id=ib.pk, amount=Decimal("56.78"))
    page = client_a.get("/payments/").content.decode()
    assert "12.34" in page and "A-1" in page
    assert "56.78" not in page and "B-1" not in page


def test_invoice_page_records_and_deletes_a_payment_and_shows_writeback_state(
    client_a, partner_a, make_invoice
):
    invoice = make_invoice(partner_a, total="30.00")
    r = client_a.post(f"/payments/invoice/{invoice.pk}/record/", {"amount": "30", "method": "card"})
    assert r.status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    page = client_a.get(f"/invoices/{invoice.pk}/").content.decode()
    assert "$30.00" in page and "update pending" in page
    WritebackOutbox.objects.filter(invoice=invoice).update(
        state="done", autotask_paid_date="2026-02-03", sent_version=1
    )
    assert (
        "paid in Autotask on 2026-02-03"
        in client_a.get(f"/invoices/{invoice.pk}/").content.decode()
    )
    WritebackOutbox.objects.filter(invoice=invoice).update(
        state="parked", last_error="Autotask said no"
    )
    assert "failed: Autotask said no" in client_a.get(f"/invoices/{invoice.pk}/").content.decode()
    payment = Payment.objects.get()
    client_a.post(f"/payments/{payment.pk}/delete/", {"next": "invoice"})
    invoice.refresh_from_db()
    assert invoice.status == "open"


def test_too_large_manual_payment_shows_an_error_and_writes_nothing(
    client_a, partner_a, make_invoice
):
    invoice = make_invoice(partner_a, total="30.00")
    r = client_a.post(f"/payments/invoice/{invoice.pk}/record/", {"amount": "31"}, follow=True)
    assert "exceeds the outstanding balance" in r.content.decode()
    assert Payment.objects.count() == 0


def test_archive_and_unarchive_from_the_dashboard(client_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a)
    client_a.post(f"/invoices/{invoice.pk}/archive/")
    assert Invoice.objects.get(pk=invoice.pk).archived_at is not None
    assert "Unarchive invoice" in client_a.get(f"/invoices/{invoice.pk}/").content.decode()
    client_a.post(f"/invoices/{invoice.pk}/archive/", {"unarchive": "1"})
    assert Invoice.objects.get(pk=invoice.pk).archived_at is None
    customer = invoice.customer
    client_a.post(f"/invoices/customers/{customer.pk}/archive/")
    assert Customer.objects.get(pk=customer.pk).archived_at is not None


def test_settings_page_creates_an_endpoint_and_shows_the_secret_once(client_a, partner_a):
    page = client_a.get("/payments/settings/").content.decode()
    assert "Create webhook endpoint" in page
    # Shown on the answer to the POST itself (never parked in the session).
    response = client_a.post("/payments/settings/", {"action": "create"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    page = response.content.decode()
    s = payment_settings.payment_settings_get(partner=partner_a)
    assert f"/api/v1/payments/webhooks/{s.endpoint_id}/" in page
    secret = page.split('id="new-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_") and s.secret.reveal() == secret
    assert secret not in client_a.get("/payments/settings/").content.decode()


def test_settings_page_is_for_managers(client, make_user, partner_a):
    member = make_user(partner_a, role="member")
    client.force_login(member)
    assert client.get("/payments/settings/").status_code == 403


def test_home_page_money_and_times_are_formatted(client_a, partner_a, make_invoice):
    """templates/dashboard/home.html: amounts through the money filter, times through `when`."""
    from django.utils import timezone

    from sync.models import SyncState

    make_invoice(partner_a, total="2013.62", currency="EUR")
    invoice = make_invoice(partner_a, total="1500.00")
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("1234.50"))
    last = timezone.now()
    SyncState.objects.create(partner=partner_a, last_success={"new_data": last.isoformat()})
    page = client_a.get("/").content.decode()
    assert "€2,013.62" in page and "$265.50" in page  # outstanding per currency
    assert "$1,234.50" in page  # this month, and the recent payment
    assert "2013.62 EUR" not in page and "1234.50 USD" not in page
    payment = Payment.objects.get(invoice=invoice)
    received = timezone.localtime(payment.received_at, partner_a.zone)
    assert f"<td>today {received:%H:%M} {received.tzname()}</td>" in page
    local = timezone.localtime(last, partner_a.zone)
    assert f"today {local:%H:%M} {local.tzname()}" in page
    assert 'style="' not in page.split('id="kpi-overdue"')[1].split("</section>")[0]
