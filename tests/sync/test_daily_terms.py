"""The daily unpaid re-read reads Autotask's PaymentTerms only when an invoice it re-reads has no
dueDate (the terms derive it): one request less per daily run in the usual case."""

from __future__ import annotations

import pytest

from invoices.models import Invoice
from sync.models import SyncRun
from sync.services.runs import execute_run, sync_run_create
from tests.harness.sync import connect_to


@pytest.fixture
def sandbox(make_sandbox):
    # dueDate is cleared in place below (the legacy switch: Autotask re-issues instead).
    return make_sandbox(companies=3, invoices=12, switches={"invoice_edit_in_place": True})


def _connect_with_unpaid(partner, db):
    for record in db.invoices()[:4]:  # a few open invoices to re-read (the rest may be paid)
        db.update_invoice(record["id"], paidDate=None)
    conn = connect_to(partner, db)
    execute_run(partner=partner, run_id=conn.first_run.id)
    return conn


def _daily(partner) -> SyncRun:
    run = sync_run_create(
        partner=partner, kind=SyncRun.Kind.UNPAID, trigger=SyncRun.Trigger.SCHEDULE, enqueue=False
    )
    run = execute_run(partner=partner, run_id=run.id)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    return run


def test_daily_run_reads_no_payment_terms_when_every_invoice_has_a_due_date(partner_a, sandbox):
    db = sandbox.db
    _connect_with_unpaid(partner_a, db)
    assert Invoice.objects.for_partner(partner_a).filter(paid_in_autotask_on=None).exists()
    db.reset_log()

    _daily(partner_a)

    assert db.requests(entity="Invoices")  # the re-read happened
    assert db.requests(entity="PaymentTerms") == []


def test_daily_run_reads_the_terms_once_for_an_invoice_without_due_date(partner_a, sandbox):
    db = sandbox.db
    _connect_with_unpaid(partner_a, db)
    mine = Invoice.objects.for_partner(partner_a).filter(paid_in_autotask_on=None)
    first, second = list(mine.order_by("autotask_id")[:2])
    for invoice in (first, second):
        db.update_invoice(invoice.autotask_id, dueDate=None)
    due_before = first.due_date  # the sandbox's dueDate: invoice date + the term's days
    db.reset_log()

    _daily(partner_a)

    assert len(db.requests(entity="PaymentTerms")) == 1  # read once, for both invoices
    first.refresh_from_db()
    assert first.due_date == due_before  # derived from the terms again
    assert first.due_date != first.invoice_date
