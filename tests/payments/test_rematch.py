"""Parked events are re-matched after a sync (RELIABILITY §1.10): the sync's end enqueues them."""

import pytest

from invoices.models import Invoice
from payments import tasks
from payments.models import WebhookEvent
from payments.services import webhook_events

from .conftest import Sender, event

pytestmark = pytest.mark.django_db


def test_event_for_an_invoice_not_yet_synced_is_applied_after_the_next_sync(
    partner_a,
    connect,
    run_now,
    new_run,
    autotask_sandbox,
    endpoint_factory,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    autotask_sandbox.db.set_switches(own_company=False)  # legacy sandbox: no company 0
    conn = connect(partner_a)
    run_now(conn.first_run)
    db = autotask_sandbox.db
    s, secret = endpoint_factory(partner_a)
    sender = Sender(s.endpoint_id, [secret])
    # The processor knows an invoice number that Autotask has but we have not synced yet.
    company = db.companies()[0]["id"]
    db.create_invoice(company, invoice_number="LATE-1", create_date_time="2020-01-01T00:00:00Z")
    body = event("succeeded", "pay_late", None, "1.00", invoice_number="LATE-1")
    assert sender.send(body).status_code == 202
    event_row = WebhookEvent.objects.get(partner=partner_a)
    webhook_events.webhook_event_process(partner=partner_a, event_id=event_row.pk)
    event_row.refresh_from_db()
    assert (event_row.status, event_row.reason) == ("parked", "unknown_invoice")

    calls = []
    monkeypatch.setattr(tasks.process_webhook_event, "delay", lambda *a: calls.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        run = run_now(new_run(partner_a, "initial"))
    assert run.status == "succeeded", run.error_message
    assert (partner_a.pk, event_row.pk) in calls
    webhook_events.webhook_event_process(partner=partner_a, event_id=event_row.pk)
    event_row.refresh_from_db()
    assert event_row.status == "processed"
    invoice = Invoice.objects.get(partner=partner_a, number="LATE-1")
    assert invoice.paid_here == 1
