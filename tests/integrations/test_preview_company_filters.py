"""Issue 16 item 6: the connect preview counts what the sync brings, company filters included.

The invoice count used the invoice conditions only: a company-type or active-only filter (which
Invoices cannot be queried by) left the invoices of the other companies in the count (194 where
the sync brought 145)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice
from sandbox import wire
from sync.models import SyncRun
from sync.services.runs import execute_run
from tests.harness.sync import connect_to

pytestmark = pytest.mark.django_db

PREVIEW = reverse("api:autotask-preview")


@pytest.mark.parametrize(
    "filters",
    [
        {"company_types": [1]},
        {"company_types": [1, 3], "active_only": True, "include_voided": True},
        {"active_only": True},
    ],
)
def test_preview_counts_the_invoices_the_sync_brings(api_a, partner_a, autotask_sandbox, filters):
    db = autotask_sandbox.db
    # Invoices of a company of another type, and of an inactive customer (1 day old: settled).
    day_ago = wire.format_datetime(timezone.now() - timedelta(days=1))
    other_type = next(c for c in db.companies() if c["companyType"] not in (1, 3) and c["id"])
    inactive = next(c for c in db.companies() if c["companyType"] == 1 and c["id"])
    db.update_company(inactive["id"], isActive=False)
    for company in (other_type, other_type, inactive):
        db.create_invoice(company["id"], create_date_time=day_ago)
    kept = {
        c["id"]
        for c in db.companies()
        if ("company_types" not in filters or c["companyType"] in filters["company_types"])
        and (not filters.get("active_only") or c["isActive"])
    }
    others = [i for i in db.invoices() if i["companyID"] not in kept and not i["isVoided"]]
    assert others, "the sandbox must have invoices of companies the filter leaves out"
    before = len(db.requests())
    response = api_a.post(
        PREVIEW,
        {"username": db.username, "secret": db.secret, "filters": filters},
        format="json",
    )
    assert response.status_code == 200, response.content
    preview = response.json()
    # As before (5): zone + threshold + fields + 1 page of company ids + 1 count (≤ 400
    # companies; the listing also gives the customers' count).
    assert len(db.requests()) - before <= 5
    assert preview["customers"] == len(kept)

    first = connect_to(partner_a, db, filters=filters).first_run
    run = execute_run(partner=partner_a, run_id=first.id)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    synced = Invoice.objects.for_partner(partner_a).count()
    assert preview["invoices"] == synced
