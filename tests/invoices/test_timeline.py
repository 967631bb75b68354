"""The invoice timeline (issue 16, item 4): `GET /api/v1/invoices/{id}/timeline/` and the
"Timeline" section of the invoice page answer "why is this invoice (not) paid / not synced?"
in one chronological list, in plain words."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices.models import Invoice
from payments.models import (
    Payment,
    ReconciliationDrift,
    WritebackAttempt,
    WritebackOutbox,
)
from payments.services.ledger import payment_delete, payment_record
from payments.timeline import invoice_timeline
from sync.models import ChangeLogEntry, SyncRun

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
RAW_FIELDS = ("paid_in_autotask_on", "due_date", "paidDate", "_")


@pytest.fixture
def story(partner_a, make_invoice):
    """An invoice brought by a sync, changed by a later one, paid here, written back (a 429
    then success) and then found cleared in Autotask (drift)."""
    invoice = make_invoice(partner_a, total="100.00")
    brought = SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.NEW_DATA,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.SUCCEEDED,
        started_at=T0 - timedelta(minutes=1),
        finished_at=T0 + timedelta(minutes=1),
    )
    Invoice.objects.filter(pk=invoice.pk).update(created_at=T0)
    later = SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.UNPAID,
        trigger=SyncRun.Trigger.MANUAL,
        status=SyncRun.Status.SUCCEEDED,
        started_at=T0 + timedelta(days=1),
        finished_at=T0 + timedelta(days=1, minutes=1),
    )
    change = ChangeLogEntry.objects.create(
        partner=partner_a,
        run=later,
        record_type="invoice",
        record_id=invoice.pk,
        autotask_id=invoice.autotask_id,
        field="due_date",
        old_value="2026-03-31",
        new_value="2026-04-15",
    )
    ChangeLogEntry.objects.filter(pk=change.pk).update(created_at=T0 + timedelta(days=1))
    payment = payment_record(
        partner=partner_a,
        invoice_id=invoice.pk,
        amount=Decimal("100.00"),
        method="card",
        received_at=T0 + timedelta(days=2),
    )
    outbox = WritebackOutbox.objects.for_partner(partner_a).get(invoice=invoice)
    paid_on = outbox.desired_paid_date
    WritebackAttempt.objects.create(
        partner=partner_a,
        outbox=outbox,
        version=outbox.version,
        paid_date=paid_on,
        outcome=WritebackAttempt.Outcome.RETRY,
        error_kind="throttled",
        error="429 Too Many Requests",
        retry_in_seconds=60,
        started_at=T0 + timedelta(days=2, minutes=1),
        finished_at=T0 + timedelta(days=2, minutes=1),
    )
    WritebackAttempt.objects.create(
        partner=partner_a,
        outbox=outbox,
        version=outbox.version,
        paid_date=paid_on,
        outcome=WritebackAttempt.Outcome.SENT,
        started_at=T0 + timedelta(days=2, minutes=3),
        finished_at=T0 + timedelta(days=2, minutes=3),
    )
    drift = ReconciliationDrift.objects.create(
        partner=partner_a,
        invoice=invoice,
        reason=ReconciliationDrift.Reason.PAID_DATE_CLEARED,
        autotask_value="",
        ledger_value=str(paid_on),
        run_id=later.pk,
        last_seen_at=T0 + timedelta(days=5),
    )
    ReconciliationDrift.objects.filter(pk=drift.pk).update(created_at=T0 + timedelta(days=5))
    invoice.refresh_from_db()
    return {
        "invoice": invoice,
        "brought": brought,
        "later": later,
        "payment": payment,
        "paid_on": paid_on,
    }


def test_api_lists_everything_in_order_with_plain_titles(api_a, story):
    r = api_a.get(f"/api/v1/invoices/{story['invoice'].pk}/timeline/")
    assert r.status_code == 200, r.content
    entries = r.json()
    assert [(e["kind"], e["title"]) for e in entries] == [
        ("synced", "Synced from Autotask"),
        ("changed", "Due date changed"),
        ("payment", "Payment received"),
        ("writeback", "Autotask update will be retried"),
        ("writeback", f"Marked paid in Autotask on {story['paid_on']:%Y-%m-%d}"),
        ("drift", "Autotask cleared the paid date, but payments here cover the invoice"),
    ]
    ats = [e["at"] for e in entries]
    assert ats == sorted(ats)
    for e in entries:
        assert not any(raw in e["title"] for raw in RAW_FIELDS), e["title"]

    synced, changed, payment, retry, sent, drift = entries
    assert synced["run_id"] == story["brought"].pk
    assert synced["link"] == reverse("sync:run-detail", args=[story["brought"].pk])
    assert "scheduled new data sync" in synced["detail"]
    assert changed["run_id"] == story["later"].pk
    assert "Due date: 2026-03-31 → 2026-04-15" in changed["detail"]
    assert payment["payment_id"] == story["payment"].pk
    assert "100.00 USD, card, recorded by hand" in payment["detail"]
    assert "429 Too Many Requests" in retry["detail"]
    assert "Next try in 60 s" in retry["detail"]
    assert "Autotask accepted it" in sent["detail"]
    assert "Autotask shows no paid date" in drift["detail"]
    assert drift["run_id"] == story["later"].pk


def test_another_partners_invoice_is_404(api_b, story):
    r = api_b.get(f"/api/v1/invoices/{story['invoice'].pk}/timeline/")
    assert r.status_code == 404


def test_page_shows_the_timeline_newest_first(client_a, story):
    r = client_a.get(reverse("invoices:detail", args=[story["invoice"].pk]))
    assert r.status_code == 200
    body = r.content.decode()
    assert 'id="invoice-timeline"' in body
    assert "<h2>Timeline</h2>" in body
    section = body[body.index('id="invoice-timeline"') :]
    newest = section.index("Autotask cleared the paid date")
    payment = section.index("Payment received")
    oldest = section.index("Synced from Autotask")
    assert newest < payment < oldest
    assert reverse("sync:run-detail", args=[story["brought"].pk]) in section


def test_paid_date_changes_deleted_payments_and_local_invoices(partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="50.00")
    for old, new in ((None, "2026-03-02"), ("2026-03-02", None)):
        ChangeLogEntry.objects.create(
            partner=partner_a,
            record_type="invoice",
            record_id=invoice.pk,
            field="paid_in_autotask_on",
            old_value=old,
            new_value=new,
        )
    payment = payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("10.00"))
    payment_delete(partner=partner_a, payment_id=payment.pk)
    titles = [e.title for e in invoice_timeline(partner=partner_a, invoice=invoice)]
    assert "Marked paid in Autotask" in titles
    assert "Paid date cleared in Autotask" in titles
    assert titles[-2:] == ["Payment received", "Payment deleted"]
    assert Payment.objects.get(pk=payment.pk).status == "deleted"

    local = make_invoice(partner_a, source="local")
    (entry,) = invoice_timeline(partner=partner_a, invoice=local)
    assert (entry.kind, entry.title) == ("created", "Created here")


def test_another_partners_rows_never_appear(partner_a, partner_b, make_invoice):
    invoice = make_invoice(partner_a)
    ChangeLogEntry.objects.create(
        partner=partner_b,
        record_type="invoice",
        record_id=invoice.pk,
        field="total",
        old_value="1",
        new_value="2",
    )
    kinds = [e.kind for e in invoice_timeline(partner=partner_a, invoice=invoice)]
    assert kinds == ["synced"]
    with pytest.raises(ValueError):
        invoice_timeline(partner=partner_b, invoice=invoice)
