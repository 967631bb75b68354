"""Issue 16 items 4 and 5.

4: a customer whose company Autotask no longer returns is flagged "no longer in Autotask" by
the daily run, like invoices; company changes are caught even when Autotask does not move the
change date the hourly run asks for (the daily run re-reads every company: 1 request per 500).
5: Fetch New Data started by a person also re-reads the unpaid invoices created in the last
30 days (≤ 2 requests), so one paid or voided in Autotask since arrives with it; the hourly
(scheduled) run does not (3 requests when idle)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer
from invoices.models import Invoice, InvoiceStatus
from sandbox import wire
from sync.models import ChangeLogEntry, SyncRun
from sync.services.runs import execute_run, sync_run_create
from tests.harness.sync import connect_to

pytestmark = pytest.mark.django_db


def _run(partner, kind, trigger=SyncRun.Trigger.MANUAL):
    run = sync_run_create(partner=partner, kind=kind, trigger=trigger, enqueue=False)
    run = execute_run(partner=partner, run_id=run.id)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    return run


@pytest.fixture
def synced(partner_a, autotask_sandbox):
    db = autotask_sandbox.db
    first = connect_to(partner_a, db).first_run
    assert execute_run(partner=partner_a, run_id=first.id).status == SyncRun.Status.SUCCEEDED
    return db


def test_daily_run_flags_a_customer_deleted_in_autotask(partner_a, synced):
    db = synced
    gone = Customer.objects.for_partner(partner_a).filter(source="autotask").last()
    kept = Customer.objects.for_partner(partner_a).exclude(id=gone.id).filter(source="autotask")
    # The sandbox deletes companies (DELETE /_sandbox/databases/{db}/companies/{id}); in
    # Autotask "deleted" is also "no longer visible to the API user": the same to us.
    db.delete_company(gone.autotask_id)
    before = len(db.requests())
    run = _run(partner_a, SyncRun.Kind.UNPAID)
    gone.refresh_from_db()
    assert gone.missing_in_autotask_since is not None
    assert gone.archived_at is None  # flagged, never archived
    assert not kept.filter(missing_in_autotask_since__isnull=False).exists()
    assert ChangeLogEntry.objects.filter(
        run=run, record_type="customer", record_id=gone.id, field="missing_in_autotask_since"
    ).exists()
    # One request for every company (≤ 500): the daily run's only addition.
    companies = [r for r in db.requests()[before:] if r["entity"] == "Companies"]
    assert len(companies) == 1
    # A second daily run changes nothing.
    again = _run(partner_a, SyncRun.Kind.UNPAID)
    assert not ChangeLogEntry.objects.filter(run=again, record_type="customer").exists()


def test_daily_run_catches_a_company_change_the_change_date_missed(partner_a, synced):
    db = synced
    customer = Customer.objects.for_partner(partner_a).filter(source="autotask").first()
    old = db.get_company(customer.autotask_id)
    # Autotask did not move the date fields the hourly run asks for.
    db.update_company(
        customer.autotask_id,
        companyName="Renamed Ltd",
        lastTrackedModifiedDateTime=old["lastTrackedModifiedDateTime"],
        lastActivityDate=old["lastActivityDate"],
    )
    _run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.SCHEDULE)
    customer.refresh_from_db()
    assert customer.name != "Renamed Ltd"
    _run(partner_a, SyncRun.Kind.UNPAID)
    customer.refresh_from_db()
    assert customer.name == "Renamed Ltd"


def test_manual_fetch_new_data_rereads_recent_unpaid_invoices(partner_a, synced):
    db = synced
    company = Customer.objects.for_partner(partner_a).filter(source="autotask").first()
    # Older than the hourly run's overlap (2 h): the daily id reconcile brings them in.
    created = wire.format_datetime(timezone.now() - timedelta(hours=4))
    recent = db.create_invoice(company.autotask_id, create_date_time=created)
    voided = db.create_invoice(company.autotask_id, create_date_time=created)
    _run(partner_a, SyncRun.Kind.UNPAID)
    assert (
        Invoice.objects.for_partner(partner_a)
        .filter(autotask_id__in=[recent["id"], voided["id"]], status=InvoiceStatus.OPEN)
        .count()
        == 2
    )
    db.set_invoice_paid_date(recent["id"], timezone.now().date())
    db.void_invoice(voided["id"])

    hourly = _run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.SCHEDULE)
    assert hourly.requests_used <= 3
    assert Invoice.objects.get(partner=partner_a, autotask_id=recent["id"]).status == "open"

    before = len(db.requests())
    manual = _run(partner_a, SyncRun.Kind.NEW_DATA)
    open_recent = Invoice.objects.for_partner(partner_a).filter(
        autotask_created_at__gte=timezone.now() - timedelta(days=30)
    )
    assert manual.requests_used - hourly.requests_used <= 2
    assert len(db.requests()) - before <= 3 + 2
    assert open_recent.get(autotask_id=recent["id"]).status == InvoiceStatus.PAID
    assert open_recent.get(autotask_id=voided["id"]).status == InvoiceStatus.VOID
