"""A credit in Autotask (issue 16, "Why" 6): Autotask has no per-invoice credit; a credit is a
negative line on the company's next invoice, inside its invoiceTotal. The invoice page and the
API once said "Credits in Autotask 0.00" after one; now the credit shows where Autotask puts it:
in the next invoice's total, and nowhere as a separate (always zero) figure."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice
from sync.models import SyncRun
from sync.tuning import SETTLE_TIME

pytestmark = pytest.mark.django_db


def test_a_credit_lowers_the_next_invoice_and_no_zero_credit_is_shown(
    partner_a, connect, run_now, new_run, autotask_sandbox, client_a, api_a
):
    run = run_now(connect(partner_a).first_run)
    assert run.status == "succeeded", run.error_message
    db = autotask_sandbox.db
    customer_invoice = Invoice.objects.filter(partner=partner_a, voided=False).first()
    company_id = customer_invoice.customer.autotask_id
    db.add_company_credit(company_id, 25.0)
    created = db.create_invoice(company_id, lines=[{"quantity": 1, "rate": 100.0}])

    with time_machine.travel(timezone.now() + SETTLE_TIME + timedelta(minutes=1), tick=True):
        done = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.OPS))
    assert done.status == "succeeded", done.error_message
    invoice = Invoice.objects.get(partner=partner_a, autotask_id=created["id"])
    assert invoice.total == Decimal("75.00")  # 100 less the 25 credit line
    assert invoice.outstanding == Decimal("75.00")

    page = client_a.get(reverse("invoices:detail", args=[invoice.pk])).content.decode()
    assert "Credits in Autotask" not in page and "75.00" in page
    body = api_a.get(f"/api/v1/invoices/{invoice.pk}/").json()
    assert "credits" not in body and body["total"] == "75.00"
