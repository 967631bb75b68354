"""The invoice page's small things (issue 17): "Record payment" only while something is due,
one true statement about Autotask's paid date, confirmations by data-confirm (no inline
handlers), real labels on the payment form, money and times formatted, and a sync line."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice
from payments.models import Payment, WritebackOutbox
from payments.services import ledger
from sync.models import ChangeLogEntry, SyncRun

pytestmark = pytest.mark.django_db
INLINE_HANDLER = re.compile(r"\son[a-z]+=", re.I)


def page(client, invoice) -> str:
    response = client.get(reverse("invoices:detail", args=[invoice.pk]))
    assert response.status_code == 200
    return response.content.decode()


def autotask_statement(html) -> str:
    found = re.search(r'<p id="writeback-status">(.*?)</p>', html, re.S)
    words = re.sub(r"<[^>]+>", " ", found.group(1)).split()
    assert words[:2] == ["In", "Autotask:"]
    return " ".join(words[2:])


# --- Record payment -----------------------------------------------------------------------------


def test_record_payment_is_offered_while_something_is_due(client_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="100.00")
    assert 'id="record-payment"' in page(client_a, invoice)
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("40.00"))
    assert 'id="record-payment"' in page(client_a, invoice)  # partially paid


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("paid_here", "Paid: nothing left to record."),
        ("paid_in_autotask", "Paid: nothing left to record."),
        ("void", "Void in Autotask: it takes no payment."),
        ("archived", "Archived: unarchive it to record a payment."),
    ],
)
def test_record_payment_is_not_offered_when_nothing_can_be_paid(
    client_a, partner_a, make_invoice, state, why
):
    invoice = make_invoice(partner_a, total="100.00")
    if state == "paid_here":
        ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("100.00"))
    elif state == "paid_in_autotask":
        Invoice.objects.filter(pk=invoice.pk).update(paid_in_autotask_on="2026-01-20")
    elif state == "void":
        Invoice.objects.filter(pk=invoice.pk).update(voided=True)
    else:
        Invoice.objects.filter(pk=invoice.pk).update(archived_at=timezone.now())
    html = page(client_a, invoice)
    assert 'id="record-payment"' not in html and "Record payment" not in html
    assert why in html


# --- one statement about Autotask's paid date ----------------------------------------------------


def test_paid_in_autotask_by_someone_else(client_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, paid_in_autotask_on="2026-01-20")
    html = page(client_a, invoice)
    assert autotask_statement(html) == (
        "paid in Autotask on 2026-01-20 (recorded in Autotask, not here)"
    )
    assert html.count("in Autotask on") == 1  # said once: no second line that could disagree
    assert "Paid in Autotask</th>" not in html


def test_paid_by_our_write_back_is_not_contradicted(client_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="30.00")
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("30.00"))
    assert autotask_statement(page(client_a, invoice)) == "update pending"
    WritebackOutbox.objects.filter(invoice=invoice).update(
        state="done", autotask_paid_date="2026-02-03", sent_version=1
    )
    html = page(client_a, invoice)
    # paid_in_autotask_on stays empty (it is "paid by someone else"): once that showed "—"
    # beside "paid in Autotask on 2026-02-03".
    assert Invoice.objects.get(pk=invoice.pk).paid_in_autotask_on is None
    assert autotask_statement(html) == (
        "marked paid in Autotask on 2026-02-03 (by PaySync, for the payments here)"
    )
    assert html.count("in Autotask on") == 1 and "not paid" not in html
    WritebackOutbox.objects.filter(invoice=invoice).update(state="parked", last_error="No access")
    assert autotask_statement(page(client_a, invoice)) == "update failed: No access"


def test_unpaid_and_local_invoices(client_a, partner_a, make_invoice):
    assert autotask_statement(page(client_a, make_invoice(partner_a))) == "not paid"
    local = make_invoice(partner_a, source="local")
    assert autotask_statement(page(client_a, local)) == "created here, never sent to Autotask"


# --- confirmations, labels, money, times ---------------------------------------------------------


def test_confirmations_use_data_confirm_not_inline_handlers(client_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="1234.50")
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("34.50"))
    pages = {
        "invoice": page(client_a, invoice),
        "payments": client_a.get(reverse("dashboard:payments")).content.decode(),
        "drift": client_a.get(reverse("payments:drift")).content.decode(),
    }
    for name, html in pages.items():
        assert not INLINE_HANDLER.search(html), name
    question = (
        'data-confirm="Delete this payment of $34.50? The invoice re-opens here and, if it was '
        'marked paid in Autotask, its paid date is cleared there."'
    )
    assert question in pages["invoice"] and question in pages["payments"]
    assert f'data-confirm="Archive invoice {invoice.number}?' in pages["invoice"]


def test_drift_and_move_templates_have_no_inline_handlers():
    # The move forms render only with a voided-after-payment drift: check their source too.
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    for name in ("payments/drift.html", "invoices/detail.html", "payments/_invoice_payments.html"):
        source = (root / name).read_text()
        assert not INLINE_HANDLER.search(source), name
        assert "data-confirm=" in source, name


def test_payment_form_has_labels_not_placeholders(client_a, partner_a, make_invoice):
    html = page(client_a, make_invoice(partner_a, currency="EUR"))
    form = re.search(r'<form[^>]*id="record-payment".*?</form>', html, re.S).group(0)
    assert "placeholder" not in form
    for field, label in (("amount", "Amount (EUR)"), ("method", "Method"), ("note", "Note")):
        assert f'<label for="payment-{field}">{label}</label>' in form
        assert re.search(rf'id="payment-{field}" name="{field}"', form)


def test_money_and_times_are_formatted(client_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="2013.62", tax="13.62", currency="EUR")
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("13.62"))
    html = page(client_a, invoice)
    assert "€2,013.62 (tax €13.62)" in html and "€2,000.00" in html
    assert "2013.62 EUR" not in html and "2000.00" not in html
    payment = Payment.objects.get(invoice=invoice)
    local = timezone.localtime(payment.received_at, partner_a.zone)
    assert f"<td>today {local:%H:%M} {local.tzname()}</td>" in html
    timeline = re.search(r'id="invoice-timeline".*?</section>', html, re.S).group(0)
    assert f">today {local:%H:%M} {local.tzname()}</time>" in timeline


# --- the sync line -------------------------------------------------------------------------------


@pytest.fixture
def midday():
    """A fixed time of day: "an hour ago" is "today" (on the wall clock between 00:00 and
    01:00 it was yesterday)."""
    with time_machine.travel(datetime(2026, 3, 2, 14, 0, tzinfo=UTC), tick=False):
        yield


def test_sync_line_says_when_autotask_was_last_read(client_a, partner_a, make_invoice, midday):
    invoice = make_invoice(partner_a)
    Invoice.objects.filter(pk=invoice.pk).update(created_at=timezone.now() - timedelta(days=3))
    invoice.refresh_from_db()
    brought = timezone.localtime(invoice.created_at, partner_a.zone)
    assert f"Last read from Autotask {brought:%Y-%m-%d %H:%M}" in page(client_a, invoice)

    # A later daily run re-read it (it is open): that is the last read.
    finished = timezone.now() - timedelta(hours=1)
    SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.UNPAID,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.SUCCEEDED,
        started_at=finished - timedelta(minutes=1),
        finished_at=finished,
    )
    local = timezone.localtime(finished, partner_a.zone)
    assert f"Last read from Autotask today {local:%H:%M}" in page(client_a, invoice)

    # A failed run read nothing for sure; a later change by a sync counts.
    SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.UNPAID,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.FAILED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    assert f"Last read from Autotask today {local:%H:%M}" in page(client_a, invoice)
    change = ChangeLogEntry.objects.create(
        partner=partner_a, record_type="invoice", record_id=invoice.pk, field="due_date"
    )
    changed = timezone.localtime(change.created_at, partner_a.zone)
    assert f"Last read from Autotask today {changed:%H:%M}" in page(client_a, invoice)


def test_no_sync_line_for_invoices_created_here(client_a, partner_a, make_invoice):
    assert "Last read from Autotask" not in page(client_a, make_invoice(partner_a, source="local"))
