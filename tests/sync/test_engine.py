"""The sync engine against the sandbox over real HTTP (R3-R9)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers.models import Customer
from invoices.models import Invoice
from sync.models import ChangeLogEntry, SyncRun

pytestmark = pytest.mark.django_db


def sandbox_invoices(db, *, settled=True):
    cutoff = timezone.now() - timedelta(minutes=10)
    out = []
    for inv in db.invoices():
        if inv.get("isVoided"):
            continue
        if settled and inv["createDateTime"] > cutoff.strftime("%Y-%m-%dT%H:%M:%S.000Z"):
            continue
        out.append(inv)
    return out


def test_initial_sync_brings_every_company_and_non_voided_invoice(
    partner_a, connect, run_now, autotask_sandbox
):
    autotask_sandbox.db.set_switches(own_company=False)  # legacy sandbox: no company 0
    conn = connect(partner_a)
    run = run_now(conn.first_run)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    db = autotask_sandbox.db
    assert Customer.objects.filter(partner=partner_a).count() == len(db.companies())
    expected = {inv["id"] for inv in sandbox_invoices(db)}
    got = set(Invoice.objects.filter(partner=partner_a).values_list("autotask_id", flat=True))
    assert got == expected
    assert run.created == len(expected) + len(db.companies())
    assert run.requests_used > 0
    assert ChangeLogEntry.objects.filter(run=run).count() == 0


def test_second_run_changes_nothing(partner_a, connect, run_now, new_run):
    conn = connect(partner_a)
    run_now(conn.first_run)
    before = list(Invoice.objects.order_by("id").values())
    rerun = run_now(new_run(partner_a, SyncRun.Kind.INITIAL))
    assert rerun.status == SyncRun.Status.SUCCEEDED
    assert rerun.created == 0 and rerun.updated == 0
    assert list(Invoice.objects.order_by("id").values()) == before
    assert ChangeLogEntry.objects.count() == 0


def test_amount_and_due_date_change_reaches_unpaid_invoice_but_not_paid_one(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    autotask_sandbox.db.set_switches(invoice_edit_in_place=True)  # legacy sandbox: edit in place
    conn = connect(partner_a)
    run_now(conn.first_run)
    db = autotask_sandbox.db
    unpaid = Invoice.objects.filter(partner=partner_a, status="open").order_by("id")
    target, paid_target = unpaid[0], unpaid[1]
    # paid_target gets paid here in full first
    Invoice.objects.filter(pk=paid_target.pk).update(paid_here=paid_target.total)
    db.set_invoice_total(target.autotask_id, 999.99)
    db.set_invoice_due_date(target.autotask_id, "2030-01-31")
    db.set_invoice_total(paid_target.autotask_id, 5.00)

    run = run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    target.refresh_from_db()
    assert target.total == Decimal("999.99")
    assert str(target.due_date) == "2030-01-31"
    assert target.outstanding == Decimal("999.99")
    changed = set(
        ChangeLogEntry.objects.filter(run=run, record_id=target.pk).values_list("field", flat=True)
    )
    assert {"total", "due_date"} <= changed
    paid_target.refresh_from_db()
    assert paid_target.total != Decimal("5.00")
    assert not ChangeLogEntry.objects.filter(record_id=paid_target.pk).exists()


def test_paid_in_autotask_becomes_paid_here(partner_a, connect, run_now, new_run, autotask_sandbox):
    conn = connect(partner_a)
    run_now(conn.first_run)
    inv = Invoice.objects.filter(partner=partner_a, status="open").first()
    autotask_sandbox.db.set_invoice_paid_date(inv.autotask_id, "2026-11-20")
    run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    inv.refresh_from_db()
    assert inv.status == "paid"
    assert str(inv.paid_in_autotask_on) == "2026-11-20"
    assert inv.outstanding == 0


def test_credit_lowers_outstanding(partner_a, connect, run_now, new_run, autotask_sandbox):
    autotask_sandbox.db.set_switches(credit_in_place=True)  # legacy sandbox: credit in place
    conn = connect(partner_a)
    run_now(conn.first_run)
    inv = Invoice.objects.filter(partner=partner_a, status="open", total__gt=50).first()
    before = inv.outstanding
    autotask_sandbox.db.add_credit(inv.autotask_id, 25.00)
    run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    inv.refresh_from_db()
    assert inv.outstanding == before - Decimal("25.00")


def test_deleted_invoice_is_flagged_not_archived(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    autotask_sandbox.db.set_switches(invoice_delete=True)  # legacy sandbox: invoices deletable
    conn = connect(partner_a)
    run_now(conn.first_run)
    inv = Invoice.objects.filter(partner=partner_a, status="open").first()
    autotask_sandbox.db.delete_invoice(inv.autotask_id)
    run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    inv.refresh_from_db()
    assert inv.missing_in_autotask_since is not None
    assert inv.archived_at is None
    assert Invoice.objects.filter(pk=inv.pk).exists()


def test_archived_invoice_stays_archived_over_syncs(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    autotask_sandbox.db.set_switches(invoice_edit_in_place=True)  # legacy sandbox: edit in place
    conn = connect(partner_a)
    run_now(conn.first_run)
    inv = Invoice.objects.filter(partner=partner_a, status="open").first()
    archived_at = timezone.now()
    Invoice.objects.filter(pk=inv.pk).update(archived_at=archived_at)
    autotask_sandbox.db.set_invoice_total(inv.autotask_id, 1234.56)
    for kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.UNPAID, SyncRun.Kind.INITIAL):
        run_now(new_run(partner_a, kind))
    inv.refresh_from_db()
    assert inv.archived_at == archived_at
    assert inv.total != Decimal("1234.56")


def test_hourly_sync_with_nothing_new_costs_at_most_3_requests(
    partner_a, connect, run_now, new_run
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    # The hourly run is the scheduled one (a person's Fetch New Data also re-reads the
    # unpaid invoices of the last 30 days: tests/sync/test_recent_open_and_customers.py).
    run = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.SCHEDULE))
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.requests_used <= 3
    assert run.created == 0 and run.updated == 0


def test_hourly_sync_picks_up_a_new_settled_invoice_and_its_new_customer(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    db = autotask_sandbox.db
    company = db.create_company(companyName="Brand New Co")
    created_at = (timezone.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    new = db.create_invoice(company["id"], create_date_time=created_at)
    unsettled = db.create_invoice(company["id"])
    run = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA))
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert Invoice.objects.filter(partner=partner_a, autotask_id=new["id"]).exists()
    assert Customer.objects.filter(partner=partner_a, autotask_id=company["id"]).exists()
    assert not Invoice.objects.filter(partner=partner_a, autotask_id=unsettled["id"]).exists()


def test_identifier_autotask_id_and_empty_number_fallback(
    partner_a, connect, run_now, autotask_sandbox
):
    conn = connect(partner_a, identifier="autotask_id")
    run_now(conn.first_run)
    for autotask_id, number in Invoice.objects.values_list("autotask_id", "number"):
        assert number == str(autotask_id)


def test_two_partners_same_autotask_ids_stay_separate(partner_a, partner_b, connect, run_now):
    run_now(connect(partner_a).first_run)
    a_rows = list(Invoice.objects.filter(partner=partner_a).order_by("id").values())
    run_now(connect(partner_b).first_run)
    assert Invoice.objects.filter(partner=partner_b).count() == len(a_rows)
    assert list(Invoice.objects.filter(partner=partner_a).order_by("id").values()) == a_rows


def test_invoices_of_an_archived_customer_are_left_alone(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    customer = Customer.objects.filter(partner=partner_a, invoices__isnull=False).first()
    Customer.objects.filter(pk=customer.pk).update(archived_at=timezone.now())
    created_at = (timezone.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    new = autotask_sandbox.db.create_invoice(customer.autotask_id, create_date_time=created_at)
    run = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA))
    assert not Invoice.objects.filter(autotask_id=new["id"]).exists()
    assert run.skipped_reasons.get("customer archived here", 0) >= 1
    customer.refresh_from_db()
    assert customer.archived_at is not None


def test_hourly_sync_updates_a_changed_company(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    conn = connect(partner_a)
    run_now(conn.first_run)
    customer = Customer.objects.filter(partner=partner_a).first()
    autotask_sandbox.db.update_company(customer.autotask_id, companyName="Renamed Widgets Ltd")
    run = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA))
    customer.refresh_from_db()
    assert customer.name == "Renamed Widgets Ltd"
    change = ChangeLogEntry.objects.get(run=run, record_id=customer.pk, field="name")
    assert change.new_value == "Renamed Widgets Ltd"
    assert run.updated == 1


def test_void_in_autotask_voids_here(partner_a, connect, run_now, new_run, autotask_sandbox):
    conn = connect(partner_a)
    run_now(conn.first_run)
    inv = Invoice.objects.filter(partner=partner_a, status="open").first()
    autotask_sandbox.db.void_invoice(inv.autotask_id)
    run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    inv.refresh_from_db()
    assert inv.status == "void" and inv.outstanding == 0


def test_malformed_record_is_skipped_with_reason_rest_goes_on(
    partner_a, connect, run_now, autotask_sandbox, monkeypatch
):
    from integrations.autotask.records import Invoice as AutotaskInvoice

    conn = connect(partner_a)
    original = AutotaskInvoice.from_api.__func__
    bad_id = sandbox_invoices(autotask_sandbox.db)[0]["id"]

    def from_api(cls, raw, *args, **kwargs):
        if raw.get("id") == bad_id:
            raw = {**raw, "invoiceTotal": "not-a-number"}
        return original(cls, raw, *args, **kwargs)

    monkeypatch.setattr(AutotaskInvoice, "from_api", classmethod(from_api))
    run = run_now(conn.first_run)
    assert run.status == SyncRun.Status.PARTIAL
    assert run.failed == 1
    assert any("invoiceTotal" in reason for reason in run.skipped_reasons)
    assert not Invoice.objects.filter(autotask_id=bad_id).exists()
    expected = len(sandbox_invoices(autotask_sandbox.db)) - 1
    assert Invoice.objects.filter(partner=partner_a).count() == expected


def test_an_internal_error_fails_the_run_at_once_with_a_plain_message(
    partner_a, connect, run_now, monkeypatch
):
    from sync import engine

    conn = connect(partner_a)

    def broken(self, rows):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine.SyncEngine, "_apply_customers", broken)
    with pytest.raises(RuntimeError):
        run_now(conn.first_run)
    run = SyncRun.objects.get(pk=conn.first_run.pk)
    assert run.status == SyncRun.Status.FAILED
    assert run.error_kind == "internal"
    assert "boom" not in run.error_message
    assert run.finished_at is not None
