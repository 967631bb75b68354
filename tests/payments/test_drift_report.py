"""The drift report (issue 16, item 3): payments/selectors.py `drift_report`, the API
`GET /api/v1/reconciliation/drift/`, the partner page `/payments/drift/`, the ops admin and the
`paysync_reconciliation_drift_open` metric."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from partners.models import User
from payments.models import ReconciliationDrift, WritebackOutbox
from payments.selectors import drift_report

pytestmark = pytest.mark.django_db
URL = "/api/v1/reconciliation/drift/"
TOKEN = "metrics-token-drift"
Reason = ReconciliationDrift.Reason


def drift(partner, invoice, reason=Reason.PAID_DATE_CLEARED, **kw):
    return ReconciliationDrift.objects.create(
        partner=partner,
        invoice=invoice,
        reason=reason,
        detail=f"Autotask invoice {invoice.autotask_id}: paidDate none in Autotask",
        autotask_value="",
        ledger_value="2026-01-05",
        last_seen_at=timezone.now(),
        **kw,
    )


def outbox(partner, invoice, state, **kw):
    return WritebackOutbox.objects.create(
        partner=partner,
        invoice=invoice,
        desired_paid_date=timezone.localdate(),
        state=state,
        **kw,
    )


@pytest.fixture
def world(partner_a, partner_b, make_invoice):
    """Partner A: open drift, a resolved drift, a failed, a parked, a pending and a done
    write-back. Partner B: one open drift."""
    a = {k: make_invoice(partner_a) for k in ("drift", "failed", "parked", "pending", "done")}
    drift(partner_a, a["drift"])
    drift(partner_a, a["done"], Reason.PAID_DATE_CHANGED, resolved_at=timezone.now())
    outbox(partner_a, a["failed"], "failed", last_error_kind="invalid", last_error="refused")
    outbox(partner_a, a["parked"], "parked", last_error_kind="not_connected")
    outbox(partner_a, a["pending"], "pending")
    outbox(partner_a, a["done"], "done")
    b = make_invoice(partner_b, number="BRAVO-SECRET-1")
    drift(partner_b, b, Reason.PAID_DATE_NOT_CLEARED)
    return {"a": a, "b": b}


def test_the_api_lists_the_partners_drift_with_reason_and_action(api_a, world):
    r = api_a.get(URL)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["count"] == 4
    by_invoice = {e["invoice"]: e for e in body["results"]}
    a = world["a"]
    assert set(by_invoice) == {a[k].pk for k in ("drift", "failed", "parked", "pending")}
    entry = by_invoice[a["drift"].pk]
    assert entry["invoice_number"] == a["drift"].number
    assert entry["reason"] == "paid_date_cleared_in_autotask"
    assert entry["action"].startswith("Check the invoice in Autotask")
    assert "2026-01-05" in entry["action"]
    assert entry["since"] and entry["detail"]
    assert by_invoice[a["failed"].pk]["reason"] == "writeback_failed"
    assert "refused" in by_invoice[a["failed"].pk]["detail"]
    assert "retry the write-back" in by_invoice[a["failed"].pk]["action"]
    assert by_invoice[a["parked"].pk]["reason"] == "writeback_failed"
    assert "Reconnect Autotask" in by_invoice[a["parked"].pk]["action"]
    assert by_invoice[a["pending"].pk]["reason"] == "writeback_pending"


def test_the_api_never_shows_another_partners_drift(api_b, world, partner_c, make_user):
    body = api_b.get(URL).json()
    assert [(e["invoice"], e["reason"]) for e in body["results"]] == [
        (world["b"].pk, "paid_date_not_cleared")
    ]
    api_c = APIClient()
    api_c.force_authenticate(make_user(partner_c))
    assert api_c.get(URL).json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_the_api_is_for_partner_users_only(world):
    assert APIClient().get(URL).status_code in (401, 403)
    staff = User.objects.create_superuser("root-drift", "root@drift.test", "pw-drift-123")
    api = APIClient()
    api.force_authenticate(staff)
    assert api.get(URL).status_code == 403


def test_the_api_is_paginated_newest_first(api_a, partner_a, make_invoice):
    assert api_a.get(URL).json()["next"] is None
    now = timezone.now()
    invoices = [make_invoice(partner_a) for _ in range(5)]
    for i, invoice in enumerate(invoices):
        row = outbox(partner_a, invoice, "failed")
        WritebackOutbox.objects.filter(pk=row.pk).update(updated_at=now - timedelta(hours=i))
    assert len(api_a.get(URL).json()["results"]) == 5  # 50 a page by default, like every list
    first = api_a.get(URL, {"page_size": 2}).json()
    assert first["count"] == 5 and len(first["results"]) == 2 and first["next"]
    last = api_a.get(URL, {"page": 3, "page_size": 2}).json()
    assert len(last["results"]) == 1 and last["next"] is None
    seen = [
        e["invoice"]
        for p in (1, 2, 3)
        for e in api_a.get(URL, {"page": p, "page_size": 2}).json()["results"]
    ]
    assert seen == [i.pk for i in invoices]


def test_the_schema_describes_the_endpoint(api_a):
    schema = api_a.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    op = schema["paths"]["/api/v1/reconciliation/drift/"]["get"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"count", "results"} <= set(page["properties"])
    entry = schema["components"]["schemas"]["DriftEntry"]["properties"]
    assert {"invoice", "invoice_number", "reason", "detail", "action", "since"} <= set(entry)


def test_the_selector_can_leave_pending_write_backs_out(partner_a, world):
    reasons = {e.reason for e in drift_report(partner=partner_a, include_pending=False)}
    assert reasons == {"paid_date_cleared_in_autotask", "writeback_failed"}


def test_the_page_lists_entries_with_invoice_links(client_a, world):
    payments = client_a.get(reverse("dashboard:payments"))
    assert reverse("payments:drift") in payments.content.decode()
    r = client_a.get(reverse("payments:drift"))
    assert r.status_code == 200
    html = r.content.decode()
    for key in ("drift", "failed", "parked", "pending"):
        invoice = world["a"][key]
        assert reverse("invoices:detail", args=[invoice.pk]) in html
        assert invoice.number in html
    assert "Check the invoice in Autotask" in html
    assert "BRAVO-SECRET-1" not in html
    assert world["a"]["done"].number not in html


def test_the_page_says_when_there_is_nothing(client_a):
    r = client_a.get(reverse("payments:drift"))
    assert r.status_code == 200 and "Nothing to reconcile" in r.content.decode()


def test_the_metric_counts_open_entries_by_reason(client, settings, world):
    settings.METRICS_TOKEN = TOKEN
    text = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    gauge = "paysync_reconciliation_drift_open"
    assert f'{gauge}{{reason="paid_date_cleared_in_autotask"}} 1.0' in text
    assert f'{gauge}{{reason="paid_date_not_cleared"}} 1.0' in text  # partner B's
    assert f'{gauge}{{reason="paid_date_changed_in_autotask"}} 0.0' in text  # resolved
    assert f'{gauge}{{reason="writeback_failed"}} 2.0' in text
    assert f'{gauge}{{reason="writeback_pending"}} 1.0' in text


def test_the_admin_changelist_lists_every_partners_drift(client, world):
    root = User.objects.create_superuser("root-drift", "root@drift.test", "pw-drift-123")
    client.force_login(root)
    url = reverse("admin:payments_reconciliationdrift_changelist")
    html = client.get(url).content.decode()
    assert world["a"]["drift"].number in html and "BRAVO-SECRET-1" in html
    open_only = client.get(url, {"open": "yes"}).content.decode()
    assert world["a"]["done"].number not in open_only
    by_reason = client.get(url, {"reason": "paid_date_not_cleared"}).content.decode()
    assert "BRAVO-SECRET-1" in by_reason and world["a"]["drift"].number not in by_reason
    change = reverse("admin:payments_reconciliationdrift_change", args=[world["b"].drifts.get().pk])
    page = client.get(change)
    assert page.status_code == 200 and page.context["has_change_permission"] is False
