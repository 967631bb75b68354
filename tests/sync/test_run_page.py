"""A sync run's page, written for people (issue 17, item 4): records by the number the partner
knows, as links; plain field names; new records listed; skip reasons; start, end, duration;
the error in plain words (the raw text for ops only: the admin and the API's error_message)."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice
from sync.models import ChangeLogEntry, SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_run(partner_a, partner_b, make_invoice):
    start = timezone.now() - timedelta(minutes=5)
    run = SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.UNPAID,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.FAILED,
        started_at=start,
        finished_at=start + timedelta(seconds=12.5),
        skipped=2,
        skipped_reasons={"customer not synced (filtered out or unknown)": 2},
        error_kind="request",
        error_message="Autotask POST /zones/x/PaymentTerms/query returned HTTP 500: boom",
    )
    changed = make_invoice(partner_a, number="T-1001")
    Invoice.objects.filter(pk=changed.pk).update(created_at=start - timedelta(days=3))
    ChangeLogEntry.objects.create(
        partner=partner_a,
        run=run,
        record_type="invoice",
        record_id=changed.pk,
        autotask_id=changed.autotask_id,
        field="paid_in_autotask_on",
        old_value=None,
        new_value="2026-03-04",
    )
    brought = make_invoice(partner_a, number="T-2002")
    Invoice.objects.filter(pk=brought.pk).update(created_at=start + timedelta(seconds=3))
    other = make_invoice(partner_b, number="T-9999")  # B's, in the same window
    Invoice.objects.filter(pk=other.pk).update(created_at=start + timedelta(seconds=3))
    return run, changed, brought


def test_the_run_page_names_records_and_fields_in_plain_words(client_a, finished_run):
    run, changed, brought = finished_run
    html = client_a.get(reverse("sync:run-detail", args=[run.pk])).content.decode()
    changes = re.search(r'id="run-changes".*?</section>', html, re.S).group(0)
    assert (
        f'<a href="{reverse("invoices:detail", args=[changed.pk])}">Invoice T-1001</a>' in changes
    )
    assert "Paid in Autotask" in changes and "paid_in_autotask_on" not in html
    assert "none</td><td>2026-03-04" in changes
    new = re.search(r'id="run-new".*?</section>', html, re.S).group(0)
    assert f'<a href="{reverse("invoices:detail", args=[brought.pk])}">Invoice T-2002</a>' in new
    assert "T-1001" not in new and "T-9999" not in html  # not new; another partner's
    times = re.search(r'id="run-times">(.*?)</p>', html, re.S).group(1)
    assert "Started" in times and "ended" in times and "took 12.5 s" in times
    assert "2 \u00d7 customer not synced" in html
    error = re.search(r'id="run-error"[^>]*>(.*?)</p>', html, re.S).group(1)
    assert error.startswith("Autotask refused one of our requests")
    assert "HTTP 500" not in html and f"quote run #{finished_run[0].pk}" in html


def test_the_run_api_gives_the_plain_error_too(api_a, finished_run):
    run, *_ = finished_run
    body = api_a.get(f"/api/v1/sync-runs/{run.pk}/").json()
    assert body["error_text"].startswith("Autotask refused one of our requests")
    assert "HTTP 500" in body["error_message"]
