"""Bad input from every side (issue 9 #6): each gets a clear error and nothing already stored is
lost or changed. Autotask answers garbage; partners and integrators send garbage; the processor
sends garbage."""

import json

import pytest
from django.urls import reverse

from customers.models import Customer
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from payments.models import Payment
from sync.models import SyncRun
from sync.services.leases import RetryLater
from sync.services.runs import execute_run

pytestmark = pytest.mark.django_db


def stored(partner):
    return (
        list(Invoice.objects.filter(partner=partner).order_by("id").values()),
        list(Customer.objects.filter(partner=partner).order_by("id").values()),
        list(Payment.objects.filter(partner=partner).order_by("id").values()),
    )


@pytest.fixture
def synced_a(partner_a, connect, run_now, autotask_sandbox):
    run_now(connect(partner_a).first_run)
    return partner_a


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ("malformed_json", "failed"),  # 200 with broken JSON: a response error
        ("html_200", "failed"),  # 200 with an HTML page
        ("html_500", "retry"),  # 500 with an HTML page: transient
        ("503_empty", "retry"),
    ],
)
def test_garbage_from_autotask_changes_nothing(synced_a, autotask_sandbox, settings, fault, expect):
    settings.AUTOTASK_MAX_RETRIES = 1
    before = stored(synced_a)
    autotask_sandbox.db.set_faults(error_rate=1.0, kinds=[fault], seed=1)
    run = SyncRun.objects.create(partner=synced_a, kind="unpaid", trigger="manual")
    if expect == "retry":
        with pytest.raises(RetryLater):
            execute_run(partner=synced_a, run_id=run.id)
        run.refresh_from_db()
        assert run.status == "queued" and run.error_message.startswith("will retry")
    else:
        run = execute_run(partner=synced_a, run_id=run.id)
        assert run.status == "failed"
        assert run.error_kind and run.error_message
    assert stored(synced_a) == before


def test_wrong_types_in_a_record_skip_that_record_only(
    synced_a, autotask_sandbox, run_now, new_run
):
    inv = Invoice.objects.filter(partner=synced_a, status="open").first()
    other = Invoice.objects.filter(partner=synced_a, status="open").exclude(pk=inv.pk).first()
    autotask_sandbox.db.set_switches(invoice_edit_in_place=True)  # legacy sandbox: edit in place
    autotask_sandbox.db.set_invoice_total(other.autotask_id, 777.00)
    # A wrong type written straight into the sandbox's table, as a broken server would send.
    autotask_sandbox.db.update_invoice(inv.autotask_id, comments={"not": "a string"})
    run = run_now(new_run(synced_a, SyncRun.Kind.UNPAID))
    inv_after = Invoice.objects.get(pk=inv.pk)
    other.refresh_from_db()
    assert str(other.total) == "777.00"  # the rest went on
    assert inv_after.total == inv.total
    assert run.status == "partial" and run.failed == 1
    assert any("comments" in reason for reason in run.skipped_reasons)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all",
        b"[]",
        b'{"account_email": "x"}',
        b'{"account_email": "a@b.test", "username": "u", "secret": "s", "identifier": "nope"}',
        b'{"account_email": "a@b.test", "username": "u", "secret": "s", "filters": "all"}',
        json.dumps({"account_email": "a@b.test", "username": "u" * 500, "secret": "s"}).encode(),
    ],
)
def test_garbage_connect_bodies_are_clear_400s(api_a, synced_a, payload):
    before = list(AutotaskConnection.objects.values())
    response = api_a.generic(
        "PATCH", reverse("api:autotask-connection"), payload, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()  # a body that says what is wrong
    assert list(AutotaskConnection.objects.values()) == before


@pytest.mark.parametrize(
    "params",
    [
        {"status": "'; DROP TABLE invoices_invoice; --"},
        {"customer": "abc"},
        {"page": "-1"},
        {"search": "x" * 10_000},
        {"archived": "sometimes"},
    ],
)
def test_garbage_query_parameters_never_500(api_a, synced_a, params):
    before = stored(synced_a)
    response = api_a.get(reverse("api:invoice-list"), params)
    assert response.status_code in (200, 400, 404)
    assert stored(synced_a) == before


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe", b'{"type": 1}', b"null", b"[1,2]"])
def test_garbage_payment_bodies_are_refused_and_change_nothing(api_a, synced_a, body):
    before = stored(synced_a)
    response = api_a.generic(
        "POST", reverse("api:payment-list"), body, content_type="application/json"
    )
    assert 400 <= response.status_code < 500
    assert stored(synced_a) == before


def test_dashboard_forms_with_garbage_keep_everything(client_a, synced_a):
    before = stored(synced_a)
    response = client_a.post(
        reverse("integrations:autotask-edit"),
        {"account_email": "not-an-email", "identifier": "???", "min_total": "NaN"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid email address" in html
    assert stored(synced_a) == before
