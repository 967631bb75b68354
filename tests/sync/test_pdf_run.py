"""The PDF prefetch run (sync/engine.py `_pdf_phase`): one bad PDF skips that invoice only, with
a reason naming it, and the run ends partial; throttling still stops the run politely (issue
16). The sandbox makes one invoice's InvoicePDF fail (`fail_invoice_pdf`, kinds 500,
error_body, empty, not_pdf); a 5xx left after the client's retries is a sandbox fault."""

import pytest
from django.db.models import F

from integrations import clients
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from sync import engine
from sync.models import SyncRun
from sync.services.leases import RetryLater

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_sleep(monkeypatch):
    delays: list[float] = []
    original = clients.build_client

    def build(connection, **options):
        client = original(connection, **options)
        client.retry.sleep = delays.append
        return client

    monkeypatch.setattr(clients, "build_client", build)
    return delays


@pytest.fixture
def pdf_run(partner_a, connect, run_now, autotask_sandbox, settings, tmp_path, no_sleep):
    """A synced partner whose queued PDF run has exactly `n` open invoices to fetch (the others'
    PDFs count as current); returns (run, invoices in the run's order)."""
    settings.MEDIA_ROOT = tmp_path

    def make(n=2):
        assert run_now(connect(partner_a).first_run).status == SyncRun.Status.SUCCEEDED
        run = SyncRun.objects.get(partner=partner_a, kind=SyncRun.Kind.PDF)
        todo = list(
            Invoice.objects.filter(partner=partner_a, status="open").order_by(
                "-invoice_date", "-id"
            )[:n]
        )
        assert len(todo) == n
        Invoice.objects.filter(partner=partner_a).exclude(pk__in=[i.pk for i in todo]).update(
            pdf_fingerprint=F("autotask_fingerprint")
        )
        autotask_sandbox.db.reset_log()
        return run, todo

    return make


def pdf_requests(db):
    return [r for r in db.requests() if "invoicepdf" in r["path"].lower()]


@pytest.mark.parametrize("kind", ["500", "error_body", "empty", "not_pdf", "5xx_after_retries"])
def test_one_bad_pdf_skips_that_invoice_only(kind, pdf_run, run_now, autotask_sandbox, partner_a):
    db = autotask_sandbox.db
    run, (bad, good) = pdf_run(2)
    if kind == "5xx_after_retries":
        db.fail_next(6, "503_html", entity="Invoices")  # every attempt of the first PDF
    else:
        db.fail_invoice_pdf(bad.autotask_id, kind)
    done = run_now(run)
    assert done.status == SyncRun.Status.PARTIAL, (done.error_kind, done.error_message)
    assert (done.fetched, done.updated, done.skipped, done.failed) == (2, 1, 1, 1)
    assert done.error_kind == ""
    [(reason, count)] = done.skipped_reasons.items()
    assert count == 1
    assert f"invoice {bad.number} (Autotask id {bad.autotask_id})" in reason
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.pdf and good.pdf_fingerprint == good.autotask_fingerprint
    with good.pdf.open("rb") as fh:
        assert fh.read().startswith(b"%PDF-")
    assert not bad.pdf
    connection = AutotaskConnection.objects.get(partner=partner_a)
    assert connection.status == AutotaskConnection.Status.CONNECTED
    assert connection.last_error_kind == ""


def test_throttling_still_stops_the_pdf_run_politely(pdf_run, run_now, autotask_sandbox):
    db = autotask_sandbox.db
    run, (first, second) = pdf_run(2)
    db.fail_next(6, "500_threshold", entity="Invoices")  # throttled on every attempt
    with pytest.raises(RetryLater):
        run_now(run)
    run.refresh_from_db()
    assert (run.status, run.error_kind, run.skipped) == ("queued", "throttled", 0)
    done = run_now(run)  # the threshold passed: the requeued run goes on
    assert done.status == SyncRun.Status.SUCCEEDED, done.error_message
    assert done.skipped == 0
    for invoice in (first, second):
        invoice.refresh_from_db()
        assert invoice.pdf_fingerprint == invoice.autotask_fingerprint


def test_a_skipped_pdf_is_not_asked_again_when_the_run_resumes(
    pdf_run, run_now, autotask_sandbox, monkeypatch
):
    db = autotask_sandbox.db
    run, (bad, good) = pdf_run(2)
    db.fail_invoice_pdf(bad.autotask_id, "error_body")
    original = engine.fetch_and_store

    def fetch_and_store(invoice, client):
        if invoice.pk == good.pk and not pdf_requests(db)[1:]:
            db.fail_next(6, "429", entity="Invoices")  # the good one meets throttling once
        return original(invoice, client)

    monkeypatch.setattr(engine, "fetch_and_store", fetch_and_store)
    with pytest.raises(RetryLater):
        run_now(run)
    done = run_now(run)
    assert done.status == SyncRun.Status.PARTIAL
    assert (done.updated, done.skipped, done.failed) == (1, 1, 1)
    assert sum(1 for r in pdf_requests(db) if f"/{bad.autotask_id}/" in r["path"]) == 1


def test_pdfs_failing_in_a_row_with_5xx_are_an_outage_not_bad_pdfs(
    pdf_run, run_now, autotask_sandbox
):
    db = autotask_sandbox.db
    run, _ = pdf_run(4)
    db.fail_next(6 * 3, "503_html", entity="Invoices")  # Autotask down for three PDFs
    with pytest.raises(RetryLater):
        run_now(run)
    run.refresh_from_db()
    assert (run.status, run.error_kind) == ("queued", "server_error")
    assert run.skipped == 2  # the first two looked like bad PDFs; the third says outage
    done = run_now(run)
    assert done.status == SyncRun.Status.PARTIAL
    assert done.updated == 2  # the two not tried yet
