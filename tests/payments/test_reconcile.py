"""The reconciliation rule (payments/services/reconcile.py; issue 16, "Why" 1-3): an invoice's
state here comes from Autotask's latest read and our ledger. A write-back we have not finished
wins over a read; a read that contradicts the ledger after our write-back settled is drift,
recorded and never adopted; paid invoices are re-read, so un-paying in Autotask re-opens them;
archived customers and invoices keep following their paid state. Against the sandbox over HTTP.
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from config.api import DomainError
from customers.services import customer_archive
from invoices.models import Invoice
from invoices.services import invoice_archive
from payments.models import Payment, WebhookEvent, WritebackOutbox
from payments.services import ledger, webhook_events
from sync.models import ChangeLogEntry

from .conftest import event
from .helpers import at_paid_date, pay_in_full, writeback_drain

pytestmark = pytest.mark.django_db


def drifts(partner, invoice):
    from payments.models import ReconciliationDrift  # new with the rule

    return ReconciliationDrift.objects.filter(partner=partner, invoice=invoice)


def test_payment_deleted_while_autotask_throttles_is_not_undone_by_a_sync(
    partner_a, synced, unpaid_run
):
    """Why 1. Kills: a read adopted over a pending write-back (the sync reads back our own
    paidDate, about to be cleared, as "paid in Autotask today")."""
    db, (invoice, *_) = synced
    today = timezone.localdate()
    payment = pay_in_full(partner_a, invoice)
    assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
    assert at_paid_date(db, invoice) == today.isoformat()

    db.fail_next(1, "429", entity="Invoices", retry_after=60)
    ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
    writeback_drain(partner=partner_a)  # the clearing PATCH: 429, waits ≥ 60 s
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert outbox.state == WritebackOutbox.State.PENDING and outbox.desired_paid_date is None
    assert outbox.next_attempt_at >= timezone.now() + timedelta(seconds=55)
    assert at_paid_date(db, invoice) == today.isoformat()  # still our paidDate in Autotask

    unpaid_run()  # meanwhile
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is None
    assert (invoice.status, invoice.outstanding) == ("open", invoice.total - invoice.credits)

    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=True):
        assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
    assert at_paid_date(db, invoice) is None
    unpaid_run()
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is None and invoice.status == "open"
    assert not drifts(partner_a, invoice).exists()  # nothing drifts
    assert not ChangeLogEntry.objects.filter(
        partner=partner_a, record_id=invoice.pk, field="paid_in_autotask_on"
    ).exists()


def test_unpaying_in_autotask_reopens_the_invoice_here(partner_a, synced, unpaid_run):
    """Why 2. Kills: paid invoices never re-read; a paid invoice protected from every change."""
    db, (invoice, *_) = synced
    paid_on = timezone.localdate() - timedelta(days=3)
    db.set_invoice_paid_date(invoice.autotask_id, paid_on)
    unpaid_run()
    invoice.refresh_from_db()
    assert (invoice.paid_in_autotask_on, invoice.status) == (paid_on, "paid")

    db.set_invoice_paid_date(invoice.autotask_id, None)  # un-applied in Autotask
    run = unpaid_run()
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is None
    assert (invoice.status, invoice.outstanding) == ("open", invoice.total - invoice.credits)
    assert list(
        ChangeLogEntry.objects.filter(run=run, record_id=invoice.pk).values_list(
            "field", "old_value", "new_value"
        )
    ) == [("paid_in_autotask_on", paid_on.isoformat(), None)]

    # Paid again in Autotask, with the same date: a read equal to an older one is still
    # applied (kills: a fingerprint kept while only the paid state was applied).
    db.set_invoice_paid_date(invoice.autotask_id, paid_on)
    unpaid_run()
    invoice.refresh_from_db()
    assert (invoice.paid_in_autotask_on, invoice.status) == (paid_on, "paid")
    db.set_invoice_paid_date(invoice.autotask_id, None)
    unpaid_run()
    invoice.refresh_from_db()
    # And it can be paid here again.
    pay_in_full(partner_a, invoice)
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_recently_paid_invoices_are_reread_in_the_same_batches(partner_a, synced, unpaid_run):
    db, invoices = synced
    paid_here, paid_there = invoices[0], invoices[1]
    pay_in_full(partner_a, paid_here)
    db.set_invoice_paid_date(paid_there.autotask_id, timezone.localdate())
    unpaid_run()
    open_ids = set(
        Invoice.objects.filter(
            partner=partner_a, status__in=["open", "partially_paid"]
        ).values_list("autotask_id", flat=True)
    )
    db.reset_counters()
    run = unpaid_run()
    in_queries = [
        item["value"]
        for entry in db.requests(entity="Invoices")
        for item in (entry.get("body") or {}).get("filter") or []
        if item.get("op") == "in"
    ]
    asked = {i for batch in in_queries for i in batch}
    assert {paid_here.autotask_id, paid_there.autotask_id} | open_ids <= asked
    assert len(in_queries) == 1  # one batch: the paid ones ride along with the unpaid
    assert run.requests_used == len(db.requests())


def test_archived_customer_and_invoice_keep_following_autotask_paid_state(
    partner_a, synced, unpaid_run, sender_for
):
    """Why 3. Kills: invoices of archived customers (or archived invoices) skipped by the
    re-read; a payment accepted on an invoice paid in Autotask."""
    db, (invoice, archived_invoice, *_) = synced
    customer_archive(partner=partner_a, customer_id=invoice.customer_id)
    invoice_archive(partner=partner_a, invoice_id=archived_invoice.pk)
    today = timezone.localdate()
    for inv in (invoice, archived_invoice):
        db.set_invoice_paid_date(inv.autotask_id, today)
    before = {
        i["id"]: i
        for i in Invoice.objects.filter(pk__in=[invoice.pk, archived_invoice.pk]).values()
    }

    unpaid_run()
    for inv in (invoice, archived_invoice):
        inv.refresh_from_db()
        assert (inv.paid_in_autotask_on, inv.status, inv.outstanding) == (today, "paid", 0)
        old = before[inv.pk]
        assert inv.archived_at == old["archived_at"]  # hidden (or not) as it was
        assert [getattr(inv, f) for f in ("total", "due_date", "number")] == [
            old["total"],
            old["due_date"],
            old["number"],
        ]
    invoice.customer.refresh_from_db()
    assert invoice.customer.archived_at is not None

    with pytest.raises(DomainError) as refused:
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("1.00"))
    assert (refused.value.code, refused.value.status) == ("invoice_paid_in_autotask", 409)

    sender = sender_for(partner_a)
    response = sender.send(event("succeeded", "pay_after_autotask", invoice, amount="1.00"))
    assert response.status_code == 202
    row = WebhookEvent.objects.get(partner=partner_a, processor_payment_id="pay_after_autotask")
    webhook_events.webhook_event_process(partner=partner_a, event_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.reason) == (WebhookEvent.Status.PARKED, "paid_in_autotask")
    assert not Payment.objects.filter(partner=partner_a, invoice=invoice).exists()


@pytest.mark.parametrize("autotask_now", [None, date(2026, 1, 15)], ids=["cleared", "changed"])
def test_a_read_contradicting_our_settled_write_back_is_drift_never_adopted(
    partner_a, synced, unpaid_run, autotask_now
):
    """We set paidDate; Autotask later shows none, or another date, while payments here still
    cover the invoice: recorded once with its reason, not adopted; resolved when Autotask
    agrees again."""
    db, (invoice, *_) = synced
    today = timezone.localdate()
    pay_in_full(partner_a, invoice)
    writeback_drain(partner=partner_a)
    assert WritebackOutbox.objects.get(invoice=invoice).state == WritebackOutbox.State.DONE

    db.set_invoice_paid_date(invoice.autotask_id, autotask_now)
    unpaid_run()
    unpaid_run()  # seen again: still one open entry
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is None  # never adopted
    assert invoice.status == "paid"  # the payments here
    (drift,) = drifts(partner_a, invoice)
    expected = "paid_date_changed_in_autotask" if autotask_now else "paid_date_cleared_in_autotask"
    assert (drift.reason, drift.resolved_at) == (expected, None)
    assert drift.autotask_value == (autotask_now.isoformat() if autotask_now else "")
    assert drift.ledger_value == today.isoformat()
    assert invoice.number in drift.detail or str(invoice.autotask_id) in drift.detail
    assert WritebackOutbox.objects.get(invoice=invoice).state == WritebackOutbox.State.DONE

    db.set_invoice_paid_date(invoice.autotask_id, today)  # Autotask agrees again
    unpaid_run()
    drift.refresh_from_db()
    assert drift.resolved_at is not None
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is None and invoice.status == "paid"


def test_our_clearing_that_did_not_hold_is_drift(partner_a, synced, unpaid_run):
    """Autotask ignores `paidDate: null` (switch `paid_date_null`): the date we wrote stays
    after our clearing PATCH settled. Drift, not "paid in Autotask". The clearing's read-back
    is throttled, so the relay settles it unchecked (writeback.py): the daily re-read is the
    backstop (a read-back that runs catches it first: test_writeback_readback.py)."""
    from .test_writeback_readback import after_patch

    db, (invoice, *_) = synced
    db.set_switches(paid_date_null="ignore")
    payment = pay_in_full(partner_a, invoice)
    writeback_drain(partner=partner_a)
    ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
    throttle_read_back = after_patch(lambda: db.fail_next(1, "429", entity="Invoices"))
    assert [
        r.outcome for r in writeback_drain(partner=partner_a, client_factory=throttle_read_back)
    ] == ["sent"]
    assert at_paid_date(db, invoice) == timezone.localdate().isoformat()  # null ignored
    unpaid_run()
    invoice.refresh_from_db()
    assert invoice.paid_in_autotask_on is None and invoice.status == "open"
    (drift,) = drifts(partner_a, invoice)
    assert drift.reason == "paid_date_not_cleared"
