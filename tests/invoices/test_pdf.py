"""PDFs in real time: served from storage while current, fetched from Autotask when the invoice
changed or was never fetched, the stale copy when Autotask is down; never another partner's."""

import pytest
from django.urls import reverse

from invoices.models import Invoice
from sync.models import SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced_a(partner_a, connect, run_now, autotask_sandbox, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    run_now(connect(partner_a).first_run)
    return Invoice.objects.filter(partner=partner_a, status="open").order_by("id").first()


def pdf_requests(db):
    return [r for r in db.requests() if "InvoicePDF" in r["path"] or "invoicepdf" in r["path"]]


def test_first_download_fetches_then_serves_stored(api_a, synced_a, autotask_sandbox):
    url = reverse("api:invoice-pdf", args=[synced_a.pk])
    first = api_a.get(url)
    assert first.status_code == 200
    assert first["Content-Type"] == "application/pdf"
    assert first.content.startswith(b"%PDF-")
    assert len(pdf_requests(autotask_sandbox.db)) == 1
    second = api_a.get(url)
    assert second.content == first.content
    assert len(pdf_requests(autotask_sandbox.db)) == 1  # served from storage


def test_changed_invoice_gets_a_fresh_pdf(
    api_a, synced_a, autotask_sandbox, partner_a, run_now, new_run
):
    url = reverse("api:invoice-pdf", args=[synced_a.pk])
    api_a.get(url)
    autotask_sandbox.db.set_switches(invoice_edit_in_place=True)  # legacy sandbox: edit in place
    autotask_sandbox.db.set_invoice_total(synced_a.autotask_id, 4321.00)
    run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    fresh = api_a.get(url)
    assert fresh.status_code == 200
    assert len(pdf_requests(autotask_sandbox.db)) == 2
    assert b"4,321.00" in fresh.content or b"4321.00" in fresh.content


def test_autotask_down_serves_stale_copy(api_a, synced_a, autotask_sandbox, partner_a):
    url = reverse("api:invoice-pdf", args=[synced_a.pk])
    api_a.get(url)
    Invoice.objects.filter(pk=synced_a.pk).update(autotask_fingerprint="changed")
    autotask_sandbox.db.fail_next(20, "503_html")
    stale = api_a.get(url)
    assert stale.status_code == 200
    assert stale["X-PDF-Stale"] == "1"


def test_no_pdf_and_autotask_down_is_503(api_a, synced_a, autotask_sandbox):
    autotask_sandbox.db.fail_next(20, "503_html")
    response = api_a.get(reverse("api:invoice-pdf", args=[synced_a.pk]))
    assert response.status_code == 503
    assert response.json()["code"] == "pdf_unavailable"


def test_other_partner_gets_404(api_b, synced_a, autotask_sandbox):
    response = api_b.get(reverse("api:invoice-pdf", args=[synced_a.pk]))
    assert response.status_code == 404
    assert pdf_requests(autotask_sandbox.db) == []


def test_dashboard_pdf_link(client_a, synced_a):
    response = client_a.get(reverse("invoices:pdf", args=[synced_a.pk]))
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF-")


def test_pdf_run_prefetches_open_invoices(partner_a, synced_a, run_now, autotask_sandbox):
    pdf_run = SyncRun.objects.get(partner=partner_a, kind="pdf")
    assert pdf_run.status == "queued"  # queued by the initial sync that created invoices
    done = run_now(pdf_run)
    assert done.status == "succeeded", done.error_message
    open_count = Invoice.objects.filter(partner=partner_a, status="open").count()
    assert done.updated == open_count
    assert len(pdf_requests(autotask_sandbox.db)) == open_count
    stored = Invoice.objects.filter(partner=partner_a, status="open").exclude(pdf="")
    assert stored.count() == open_count


def test_api_amounts_are_decimal_strings(api_a, synced_a):
    data = api_a.get(reverse("api:invoice-detail", args=[synced_a.pk])).json()
    assert isinstance(data["outstanding"], str) and isinstance(data["total"], str)
    assert data["outstanding"] == data["total"]  # open, nothing paid yet
    assert data["status"] == "open"
