"""Currency comes from the Autotask company, end to end; nothing defaults to USD (issue 16).

A sandbox database whose internal currency is EUR, with its generated companies spread over EUR
and GBP (API.md §10: invoiceTotal is in the company's currency, `Companies.currencyID` points at
the `Currencies` entity, null = the internal currency). Requests are counted from the
sandbox's request log, as in the other sync tests.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from config.api import DomainError
from customers.models import Customer
from integrations.autotask import AutotaskClient, Currency, NoopLimiter
from integrations.models import AutotaskConnection
from invoices.forms import InvoiceCreateForm
from invoices.models import Invoice
from invoices.services import invoice_create_local
from payments import webhooks
from payments.models import Payment, WebhookEvent
from payments.services import ledger, payment_settings, webhook_events
from sync.models import ChangeLogEntry, SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def eur_db(make_sandbox):
    """Internal currency EUR; companies alternate EUR (id 1) and GBP (id 2); one company has
    no currencyID at all (so: the internal currency)."""
    server = make_sandbox(companies=8, invoices=60, currencies=["EUR", "GBP"])
    db = server.db
    db.update_company(db.customers()[0]["id"], currencyID=None)
    return server


def currencies_asked(db) -> int:
    return len(db.requests(entity="Currencies"))


def expected_code(db, company_id: int) -> str:
    return db.company_currency(company_id)  # null currencyID → id 1, the internal EUR


@pytest.fixture
def synced(partner_a, connect, run_now, eur_db):
    conn = connect(partner_a, server=eur_db)
    eur_db.db.reset_log()
    run = run_now(conn.first_run)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    return conn, run


def test_connect_caches_the_databases_currencies(partner_a, connect, eur_db):
    conn = connect(partner_a, server=eur_db)
    conn = AutotaskConnection.objects.get(pk=conn.pk)
    assert conn.currencies == {"1": "EUR", "2": "GBP"}
    assert conn.internal_currency == "EUR"
    assert conn.currencies_read_at is not None
    assert currencies_asked(eur_db.db) == 1


def test_initial_sync_gives_customers_and_invoices_their_companys_currency_not_usd(
    partner_a, synced, eur_db, run_now, new_run
):
    db = eur_db.db
    assert currencies_asked(db) == 0  # read at connect: the first sync needs no request for it
    customers = {c.autotask_id: c for c in Customer.objects.filter(partner=partner_a)}
    assert customers
    for company_id, customer in customers.items():
        assert customer.currency == expected_code(db, company_id), company_id
    codes = {c.currency for c in customers.values()}
    assert codes == {"EUR", "GBP"}
    nulled = db.customers()[0]["id"]
    assert db.get_company(nulled)["currencyID"] is None
    assert customers[nulled].currency == "EUR"  # null currencyID: the internal currency

    invoices = list(Invoice.objects.filter(partner=partner_a).select_related("customer"))
    assert invoices
    assert {i.currency for i in invoices} == {"EUR", "GBP"}
    assert all(i.currency == i.customer.currency for i in invoices)
    assert not Invoice.objects.filter(currency="USD").exists()
    assert not Customer.objects.filter(currency="USD").exists()

    # The hourly run with nothing new: still at most 3 requests, none for the currencies.
    db.reset_log()
    hourly = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.SCHEDULE))
    assert hourly.status == SyncRun.Status.SUCCEEDED
    assert hourly.requests_used == len(db.requests()) <= 3
    assert currencies_asked(db) == 0
    assert hourly.created == hourly.updated == 0


def test_first_sync_with_an_empty_cache_reads_the_currencies_once(
    partner_a, connect, run_now, eur_db
):
    db = eur_db.db
    conn = connect(partner_a, server=eur_db)
    # As if Autotask had refused the Currencies at connect: nothing cached.
    AutotaskConnection.objects.filter(pk=conn.pk).update(currencies={}, internal_currency="")
    db.reset_log()
    run = run_now(conn.first_run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert currencies_asked(db) == 1
    assert run.requests_used == len(db.requests())
    assert not Customer.objects.filter(partner=partner_a, currency="").exists()
    conn.refresh_from_db()
    assert (conn.currencies, conn.internal_currency) == ({"1": "EUR", "2": "GBP"}, "EUR")


def test_currencies_autotask_will_not_give_neither_fail_the_connect_nor_get_guessed(
    partner_a, connect, run_now, eur_db
):
    db = eur_db.db
    db.fail_next(1, "html_200", entity="Currencies")  # an answer we cannot read, at connect
    conn = connect(partner_a, server=eur_db)
    conn.refresh_from_db()
    assert (conn.status, conn.currencies, conn.internal_currency) == ("connected", {}, "")

    db.fail_next(1, "html_200", entity="Currencies")  # and again at the first sync
    db.reset_log()
    run = run_now(conn.first_run)
    assert currencies_asked(db) == 1  # asked once, not once per page or company
    assert run.status == SyncRun.Status.PARTIAL
    assert any(r.startswith("Autotask Currencies could not be read") for r in run.skipped_reasons)
    # Customers are synced without a currency; their invoices wait for one.
    customers = Customer.objects.filter(partner=partner_a)
    assert customers.exists() and not customers.exclude(currency="").exists()
    assert not Invoice.objects.filter(partner=partner_a).exists()

    # The next run reads them (its own one request) and brings everything in.
    db.reset_log()
    again = run_now(SyncRun.objects.create(partner=partner_a, kind="initial", trigger="ops"))
    assert again.status == SyncRun.Status.SUCCEEDED, again.skipped_reasons
    assert currencies_asked(db) == 1
    assert not Customer.objects.filter(partner=partner_a, currency="").exists()
    assert Invoice.objects.filter(partner=partner_a).exists()
    assert not Invoice.objects.filter(partner=partner_a, currency__in=["", "USD"]).exists()


def test_company_moved_to_a_currency_not_in_the_cache_reads_the_currencies_exactly_once(
    partner_a, synced, eur_db, run_now, new_run
):
    db = eur_db.db
    gbp = Customer.objects.filter(partner=partner_a, currency="GBP").order_by("id")
    first, second = gbp[0], gbp[1]
    db.update_company(first.autotask_id, currency="CHF")  # a new Currencies row, id 3
    db.update_company(second.autotask_id, currency="CHF")
    db.reset_log()
    run = run_now(new_run(partner_a, SyncRun.Kind.UNPAID))  # the daily run re-reads companies
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert currencies_asked(db) == 1  # two companies, one refresh
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.currency, second.currency) == ("CHF", "CHF")
    assert ChangeLogEntry.objects.filter(
        run=run, record_type="customer", record_id=first.pk, field="currency"
    ).values_list("old_value", "new_value").get() == ("GBP", "CHF")
    conn = AutotaskConnection.objects.get(partner=partner_a)
    assert conn.currencies["3"] == "CHF"

    # Known now: the next daily run asks nothing about currencies.
    db.reset_log()
    again = run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    assert again.status == SyncRun.Status.SUCCEEDED
    assert currencies_asked(db) == 0


def test_a_currency_unknown_even_after_a_refresh_is_not_guessed(
    partner_a, synced, eur_db, run_now, new_run
):
    db = eur_db.db
    customer = Customer.objects.filter(partner=partner_a, currency="GBP").first()
    db.update_company(customer.autotask_id, currencyID=99)  # not in Currencies
    new_company = db.create_company(currencyID=98)
    db.create_invoice(new_company["id"], create_date_time="2020-01-01T00:00:00Z")
    db.reset_log()
    run = run_now(new_run(partner_a, SyncRun.Kind.INITIAL))
    assert currencies_asked(db) == 1  # one refresh a run, however many are unknown
    customer.refresh_from_db()
    assert customer.currency == "GBP"  # left as it was
    newcomer = Customer.objects.get(partner=partner_a, autotask_id=new_company["id"])
    assert newcomer.currency == ""  # unknown, not USD
    # Its invoice is not created without a currency; the run says why.
    assert not Invoice.objects.filter(customer=newcomer).exists()
    reasons = run.skipped_reasons
    assert any("currencyID 99" in r for r in reasons), reasons
    assert any("currencyID 98" in r for r in reasons), reasons
    assert reasons.get("invoice not created: its customer's currency is unknown") == 1
    assert run.status == SyncRun.Status.PARTIAL
    assert not Invoice.objects.filter(partner=partner_a, currency__in=["", "USD"]).exists()


def test_customers_not_read_since_the_currency_existed_are_resolved_without_guessing(
    partner_a, synced, eur_db, run_now, new_run
):
    """The state right after the migration: customers have no currency yet. Invoices here
    keep theirs until the company is read; a new invoice of such a customer makes the hourly
    run fetch its company by id (no Currencies request: the cache knows it)."""
    db = eur_db.db
    kept = (
        Invoice.objects.filter(partner=partner_a, currency="GBP", status="open")
        .select_related("customer")
        .first()
    )
    old = kept.customer
    new = Customer.objects.filter(partner=partner_a, currency="GBP").exclude(pk=old.pk).first()
    Customer.objects.filter(pk__in=[old.pk, new.pk]).update(currency="", autotask_fingerprint="")
    Invoice.objects.filter(pk=kept.pk).update(currency="XXX", autotask_fingerprint="")
    # Settled and inside the hourly window.
    settled = (timezone.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    created = db.create_invoice(new.autotask_id, create_date_time=settled)

    db.reset_log()
    hourly = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.SCHEDULE))
    assert hourly.status == SyncRun.Status.SUCCEEDED, hourly.skipped_reasons
    # By id (the new invoice's customer), and the changed-since query.
    assert len(db.requests(entity="Companies")) == 2
    assert currencies_asked(db) == 0
    new.refresh_from_db()
    assert new.currency == "GBP"
    assert Invoice.objects.get(partner=partner_a, autotask_id=created["id"]).currency == "GBP"

    # The daily run: the invoice re-read before the companies keeps its currency ("XXX"
    # stands for whatever it had), the companies re-read gives its customer one, and the
    # next read of the invoice follows.
    run = run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    assert run.status == SyncRun.Status.SUCCEEDED
    kept.refresh_from_db()
    old.refresh_from_db()
    assert (kept.currency, old.currency) == ("XXX", "GBP")
    run_now(new_run(partner_a, SyncRun.Kind.UNPAID))
    kept.refresh_from_db()
    assert kept.currency == "GBP"


def test_currency_records_parse_tolerantly_and_the_client_reads_them(eur_db, settings):
    assert Currency.from_api({"id": 7}) == Currency(id=7)
    full = Currency.from_api(
        {
            "id": 2,
            "name": " gbp ",
            "description": "British Pound",
            "isActive": 1,
            "isInternalCurrency": False,
            "displaySymbol": 163,
            "exchangeRate": Decimal("0.86"),
        }
    )
    assert (full.code, full.is_active, full.is_internal, full.display_symbol) == (
        "GBP",
        True,
        False,
        "163",
    )
    assert Currency.from_api({"id": 3, "name": "Euro"}).code is None  # not a code: no guess
    db = eur_db.db
    with AutotaskClient(
        db.username, db.secret, integration_code=db.integration_code, limiter=NoopLimiter()
    ) as client:
        read = list(client.iter_currencies())
    assert [(c.id, c.code, c.is_internal, c.is_active) for c in read] == [
        (1, "EUR", True, True),
        (2, "GBP", False, True),
    ]


# --- payments against the company's currency --------------------------------------------------


@pytest.fixture
def deliver(partner_a):
    """Sign, receive and process one processor event for partner_a; the stored event back."""
    settings_obj, secret = payment_settings.payment_settings_create(partner=partner_a)

    def send(body: dict) -> WebhookEvent:
        raw = json.dumps(body).encode()
        ts = int(time.time())
        event_id = f"msg_{body['data']['payment_id']}"
        headers = {
            "webhook-id": event_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": webhooks.signature_header(secret, event_id, ts, raw),
        }
        receipt = webhook_events.webhook_event_receive(
            endpoint_id=settings_obj.endpoint_id, headers=headers, body=raw
        )
        assert receipt.status == 202, receipt.body
        row = WebhookEvent.objects.get(partner=partner_a, event_id=event_id)
        return webhook_events.webhook_event_process(partner=partner_a, event_id=row.pk)

    return send


def test_a_usd_payment_on_a_gbp_invoice_is_refused_with_its_reason(partner_a, synced, deliver):
    invoice = (
        Invoice.objects.filter(partner=partner_a, currency="GBP", status="open", total__gt=1)
        .order_by("id")
        .first()
    )
    assert invoice is not None
    body = {
        "type": "payment.succeeded",
        "data": {"payment_id": "pay_usd", "invoice_id": invoice.pk, "amount": "1.00"},
    }
    usd = deliver({**body, "data": {**body["data"], "currency": "USD"}})
    assert (usd.status, usd.reason) == ("parked", WebhookEvent.Reason.CURRENCY)
    assert usd.get_reason_display() == "Currency differs from the invoice"
    assert not Payment.objects.filter(partner=partner_a).exists()
    invoice.refresh_from_db()
    assert invoice.paid_here == 0

    gbp = deliver({**body, "data": {**body["data"], "payment_id": "pay_gbp"}})
    gbp_pay = {**body["data"], "payment_id": "pay_gbp2", "currency": "gbp"}
    gbp2 = deliver({**body, "data": gbp_pay})
    assert (gbp.status, gbp2.status) == ("processed", "processed")
    assert list(
        Payment.objects.filter(partner=partner_a).order_by("id").values_list("currency", flat=True)
    ) == ["GBP", "GBP"]

    # By hand: the payment is in the invoice's currency (there is no other to choose).
    manual = ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("1"))
    assert manual.currency == "GBP"
    # The ledger's rule itself refuses another currency.
    invoice.refresh_from_db()
    reason = ledger._unpayable_reason(
        invoice, amount=Decimal("1"), currency="USD", allow_over=True, already=Decimal(0)
    )
    assert reason == WebhookEvent.Reason.CURRENCY


def test_a_refund_before_its_payment_without_currency_or_invoice_is_not_made_usd(
    partner_a, deliver
):
    body = {
        "type": "payment.refunded",
        "data": {"payment_id": "pay_early", "invoice_number": "NOWHERE-1", "amount": "5.00"},
    }
    row = deliver(body)
    assert row.status == "processed"
    tombstone = Payment.objects.get(partner=partner_a, processor_payment_id="pay_early")
    assert (tombstone.invoice_id, tombstone.currency) == (None, "")


# --- invoices created here --------------------------------------------------------------------


def test_invoices_created_here_take_the_customers_currency(partner_a, synced):
    gbp = Customer.objects.filter(partner=partner_a, currency="GBP").first()
    common = {"partner": partner_a, "invoice_date": "2026-03-01", "total": Decimal("10.00")}
    invoice = invoice_create_local(customer_id=gbp.pk, number="HERE-1", **common)
    assert invoice.currency == "GBP"
    same = invoice_create_local(customer_id=gbp.pk, number="HERE-2", currency="gbp", **common)
    assert same.currency == "GBP"
    with pytest.raises(DomainError) as refused:
        invoice_create_local(customer_id=gbp.pk, number="HERE-3", currency="USD", **common)
    assert refused.value.code == "currency_mismatch"
    assert "GBP" in refused.value.message

    # A customer created here has no currency: the one given, else the database's internal.
    local = Customer.objects.create(partner=partner_a, source="local", name="Walk-in")
    assert local.currency == ""
    assert invoice_create_local(customer_id=local.pk, number="HERE-4", **common).currency == "EUR"
    given = invoice_create_local(customer_id=local.pk, number="HERE-5", currency="chf", **common)
    assert given.currency == "CHF"

    # The dashboard form: blank means the customer's currency; another one is a field error.
    data = {"customer": gbp.pk, "number": "F-1", "invoice_date": "2026-03-01", "total": "10.00"}
    form = InvoiceCreateForm(data={**data, "currency": ""}, partner=partner_a)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["currency"] == ""
    form = InvoiceCreateForm(data={**data, "currency": "USD"}, partner=partner_a)
    assert not form.is_valid()
    assert "billed in GBP" in str(form.errors["currency"])


def test_invoice_here_for_a_customer_without_currency_and_no_connection_needs_one(partner_a):
    local = Customer.objects.create(partner=partner_a, source="local", name="Walk-in")
    with pytest.raises(DomainError) as refused:
        invoice_create_local(
            partner=partner_a,
            customer_id=local.pk,
            number="X-1",
            invoice_date="2026-03-01",
            total=Decimal("1.00"),
        )
    assert refused.value.code == "currency_required"
    assert not Invoice.objects.exists()
