"""Void and re-issue (issue 16; reconcile.py rule 5). Autotask never edits a posted invoice: it
voids it and issues a replacement with a new id and number. An invoice voided after payments
here is flagged, its replacement proposed, and the payments move to it in one audited step;
the write-back follows the new invoice; nothing is charged twice, nothing is lost. Against the
sandbox over HTTP."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from config.api import DomainError
from invoices.models import Invoice
from payments.models import (
    Payment,
    PaymentMove,
    PaymentStatus,
    ReconciliationDrift,
    WebhookEvent,
    WritebackOutbox,
)
from payments.selectors import drift_report
from payments.services import ledger, webhook_events
from sync.models import SyncRun
from sync.tuning import SETTLE_TIME

from .conftest import event
from .helpers import at_paid_date, pay_in_full, writeback_drain

pytestmark = pytest.mark.django_db
VOIDED = ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT


@pytest.fixture
def new_data_run(partner_a, run_now, new_run):
    def run() -> SyncRun:
        # Past the settle time: an invoice created just now is read once Autotask's invoicing
        # run has surely finished (sync/engine.py).
        with time_machine.travel(timezone.now() + SETTLE_TIME + timedelta(minutes=1), tick=True):
            run = new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.OPS)
            done = run_now(run)
        assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
        return done

    return run


def reissue(db, invoice) -> Invoice | None:
    ids = db.reissue_invoice(invoice.autotask_id)
    assert ids["voided_id"] == invoice.autotask_id
    return ids["new_id"]


def open_voided_drift(partner, invoice):
    return ReconciliationDrift.objects.filter(
        partner=partner, invoice=invoice, reason=VOIDED, resolved_at__isnull=True
    )


def test_voided_after_payment_is_flagged_replacement_proposed_and_payments_moved(
    partner_a, synced, unpaid_run, new_data_run, api_a
):
    db, (invoice, *_) = synced
    payment = pay_in_full(partner_a, invoice)
    assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
    new_autotask_id = reissue(db, invoice)

    unpaid_run()  # re-reads the recently paid invoice: voided now
    invoice.refresh_from_db()
    assert invoice.voided and invoice.status == "void"
    drift = open_voided_drift(partner_a, invoice).get()
    assert Decimal(drift.ledger_value) == payment.amount

    new_data_run()  # brings the replacement; the after-sync pass proposes it
    replacement = Invoice.objects.get(partner=partner_a, autotask_id=new_autotask_id)
    drift.refresh_from_db()
    assert drift.replacement_id == replacement.pk
    [entry] = [e for e in drift_report(partner=partner_a) if e.invoice == invoice.pk]
    assert (entry.reason, entry.replacement) == (VOIDED, replacement.pk)
    assert replacement.number in entry.action

    # The payment stays where it was until someone moves it; it cannot be paid twice there.
    with pytest.raises(DomainError) as refused:
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("1"))
    assert refused.value.code == "invoice_void"

    client = api_a
    url = reverse("api:invoice-move-payments", args=[invoice.pk])
    response = client.post(url, {"to_invoice": replacement.pk}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == [
        {
            "payment": payment.pk,
            "from_invoice": invoice.pk,
            "to_invoice": replacement.pk,
            "amount": str(payment.amount),
        }
    ]
    payment.refresh_from_db()
    invoice.refresh_from_db()
    replacement.refresh_from_db()
    assert payment.invoice_id == replacement.pk and payment.status == PaymentStatus.SUCCEEDED
    assert invoice.paid_here == 0
    assert replacement.paid_here == payment.amount  # nothing lost, nothing doubled
    assert Payment.objects.filter(partner=partner_a, status="succeeded").count() == 1
    move = PaymentMove.objects.get(payment=payment)
    assert (move.from_invoice_id, move.to_invoice_id, move.via) == (
        invoice.pk,
        replacement.pk,
        "api",
    )
    assert not open_voided_drift(partner_a, invoice).exists()
    assert [e for e in drift_report(partner=partner_a) if e.invoice == invoice.pk] == []

    # The write-back follows the new invoice when the payment covers it.
    if replacement.paid_here >= replacement.total:
        assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
        assert at_paid_date(db, replacement) is not None
    assert not WritebackOutbox.objects.filter(
        invoice=invoice, state=WritebackOutbox.State.PENDING
    ).exists()

    # A second move changes nothing (idempotent).
    again = client.post(url, {"to_invoice": replacement.pk}, format="json")
    assert (again.status_code, again.json()) == (200, [])
    assert PaymentMove.objects.count() == 1

    # The timeline of both invoices tells the story.
    titles = [e["title"] for e in client.get(f"/api/v1/invoices/{invoice.pk}/timeline/").json()]
    assert "Voided in Autotask after payment here" in titles
    assert f"Payment moved to invoice {replacement.number}" in titles


def test_a_void_supersedes_paid_date_drift(partner_a, synced, unpaid_run):
    """Autotask clears the paidDate we wrote (drift), then voids the invoice, and clears its
    paidDate again after the void: the drift report shows the invoice once, as voided after
    payment; the paidDate drift is resolved and no new one is recorded."""
    db, (invoice, *_) = synced
    pay_in_full(partner_a, invoice)
    assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
    db.set_invoice_paid_date(invoice.autotask_id, None)
    unpaid_run()
    cleared = ReconciliationDrift.Reason.PAID_DATE_CLEARED
    before = ReconciliationDrift.objects.get(partner=partner_a, invoice=invoice, reason=cleared)
    assert before.resolved_at is None

    db.set_invoice_paid_date(invoice.autotask_id, "2026-01-05")  # Autotask shows a date again
    reissue(db, invoice)
    db.set_invoice_paid_date(invoice.autotask_id, None)  # cleared again, after the void
    unpaid_run()
    before.refresh_from_db()
    assert before.resolved_at is not None
    assert not ReconciliationDrift.objects.filter(
        partner=partner_a, invoice=invoice, reason=cleared, resolved_at__isnull=True
    ).exists()
    assert open_voided_drift(partner_a, invoice).exists()
    assert [(e.invoice, e.reason) for e in drift_report(partner=partner_a)] == [
        (invoice.pk, VOIDED)
    ]


def test_void_with_a_write_back_not_yet_sent_cancels_it(partner_a, synced, unpaid_run):
    db, (invoice, *_) = synced
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert outbox.state == WritebackOutbox.State.PENDING  # not sent yet
    reissue(db, invoice)
    db.reset_log()

    unpaid_run()
    outbox.refresh_from_db()
    assert (outbox.state, outbox.last_error_kind) == (WritebackOutbox.State.CANCELLED, "voided")
    assert writeback_drain(partner=partner_a) == []
    patches = db.requests(method="PATCH")
    assert patches == []  # a voided invoice's paidDate is never written
    assert open_voided_drift(partner_a, invoice).exists()


def test_void_without_payments_here_is_adopted_without_drift(partner_a, synced, unpaid_run):
    db, (invoice, *_) = synced
    reissue(db, invoice)
    unpaid_run()
    invoice.refresh_from_db()
    assert invoice.voided
    assert not ReconciliationDrift.objects.filter(partner=partner_a).exists()
    assert drift_report(partner=partner_a) == []


def test_a_webhook_for_a_voided_invoice_is_accepted_and_parked(
    partner_a, synced, unpaid_run, sender_for
):
    db, (invoice, *_) = synced
    reissue(db, invoice)
    unpaid_run()
    response = sender_for(partner_a).send(event("succeeded", "pay_void", invoice, amount="5.00"))
    assert response.status_code == 202
    row = WebhookEvent.objects.get(partner=partner_a, processor_payment_id="pay_void")
    webhook_events.webhook_event_process(partner=partner_a, event_id=row.pk)
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.PARKED
    assert not Payment.objects.filter(partner=partner_a, status="succeeded").exists()


def test_moves_that_are_not_allowed_are_refused_with_a_reason(
    partner_a, partner_b, synced, unpaid_run, api_a, api_b, make_invoice
):
    db, (invoice, other, *_) = synced
    pay_in_full(partner_a, invoice)

    def move(to_invoice_id, source=invoice):
        with pytest.raises(DomainError) as refused:
            ledger.payments_move(
                partner=partner_a, from_invoice_id=source.pk, to_invoice_id=to_invoice_id
            )
        return refused.value.code

    assert move(other.pk) == "invoice_not_void"  # not voided yet
    reissue(db, invoice)
    unpaid_run()
    assert move(invoice.pk) == "same_invoice"
    foreign = make_invoice(partner_b, total="10.00")
    assert move(foreign.pk) == "not_found"  # another partner's invoice: unknown
    created_here = make_invoice(partner_a, total="10.00", source="local", autotask_id=None)
    assert move(created_here.pk) in ("target_not_autotask", "target_customer")
    if other.customer_id != invoice.customer_id:
        assert move(other.pk) == "target_customer"
    assert Payment.objects.get(partner=partner_a).invoice_id == invoice.pk  # nothing moved
    assert not PaymentMove.objects.exists()

    # Over the API: partner B cannot even see the invoice (404), a bad body is a 400.
    b = api_b
    url = reverse("api:invoice-move-payments", args=[invoice.pk])
    assert b.post(url, {"to_invoice": other.pk}, format="json").status_code == 404
    a = api_a
    bad = a.post(url, {"to_invoice": "x"}, format="json")
    assert bad.status_code == 400
    refused = a.post(url, {"to_invoice": invoice.pk}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, "same_invoice")


def test_the_dashboard_and_ops_move_payments(
    partner_a, synced, unpaid_run, new_data_run, client, user_a, django_user_model
):
    db, (invoice, second, *_) = synced
    pay_in_full(partner_a, invoice)
    pay_in_full(partner_a, second)
    reissue(db, invoice)
    reissue(db, second)
    unpaid_run()
    new_data_run()

    client.force_login(user_a)
    page = client.get(reverse("invoices:detail", args=[invoice.pk])).content.decode()
    assert "Voided in Autotask after payment" in page
    drift = open_voided_drift(partner_a, invoice).get()
    assert f'value="{drift.replacement_id}"' in page
    report = client.get(reverse("payments:drift")).content.decode()
    assert "Move payments to" in report
    response = client.post(
        reverse("payments:move", args=[invoice.pk]),
        {"to_invoice": drift.replacement_id, "next": "drift"},
    )
    assert response.status_code == 302
    assert PaymentMove.objects.get(from_invoice=invoice).via == "dashboard"
    assert not open_voided_drift(partner_a, invoice).exists()

    # Ops: the admin action on the drift row.
    staff = django_user_model.objects.create_user("ops1", password="x", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="run_ops_actions"),
        Permission.objects.get(codename="view_reconciliationdrift"),
    )
    client.force_login(staff)
    second_drift = open_voided_drift(partner_a, second).get()
    response = client.post(
        reverse("admin:payments_reconciliationdrift_changelist"),
        {"action": "move_to_replacement", "_selected_action": [second_drift.pk]},
    )
    assert response.status_code == 302
    move = PaymentMove.objects.get(from_invoice=second)
    assert (move.via, move.moved_by_id) == ("ops", staff.pk)
    assert not open_voided_drift(partner_a, second).exists()
    assert timezone.now() >= move.created_at


def test_a_proposal_that_can_no_longer_take_payments_is_proposed_again(partner_a, make_invoice):
    from payments.services.reconcile import replacements_fill

    voided = make_invoice(partner_a, total="50.00", voided=True, paid_here=Decimal("50.00"))
    customer = voided.customer
    first = make_invoice(partner_a, customer=customer, autotask_id=voided.autotask_id + 1)
    second = make_invoice(partner_a, customer=customer, autotask_id=voided.autotask_id + 2)
    drift = ReconciliationDrift.objects.create(
        partner=partner_a,
        invoice=voided,
        reason=VOIDED,
        replacement=first,
        last_seen_at=timezone.now(),
    )
    assert replacements_fill(partner=partner_a) == 0  # still good: left alone
    drift.refresh_from_db()
    assert drift.replacement_id == first.pk

    Invoice.objects.filter(pk=first.pk).update(voided=True)  # re-issued again in Autotask
    assert replacements_fill(partner=partner_a) == 1
    drift.refresh_from_db()
    assert drift.replacement_id == second.pk

    Invoice.objects.filter(pk=second.pk).update(paid_in_autotask_on=timezone.localdate())
    assert replacements_fill(partner=partner_a) == 0
    drift.refresh_from_db()
    assert drift.replacement_id is None  # nothing open to propose: no stale proposal shown
