"""Issue 19: the initial sync inserts its pages of new invoices with the customers it read once
after the companies (`SyncEngine._customers_known`), each invoice only if its customer is still
not archived and still has that currency, checked by PostgreSQL in the INSERT itself
(`CUSTOMER_STILL_SO`); what the INSERT leaves goes through the upsert, which reads the
customers fresh. Most pages' INSERTs are built on the preparer's thread.

Against the in-process sandbox: every invoice created by the guarded INSERT in a plain run;
a customer archived, or given another currency, after the customers were read and before its
invoices are written: its invoices follow the fresh state (not created, with the reason; the
new currency), the others are unaffected.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db.models import F

from customers.models import Customer
from invoices.models import Invoice
from sync import engine as sync_engine
from sync.engine import SyncEngine
from sync.models import ChangeLogEntry, SyncRun

from .test_concurrency import settled_invoices

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(autotask_sandbox, make_sandbox):
    return make_sandbox(companies=30, invoices=3_000, latency_ms=10)


@pytest.fixture
def inserts(monkeypatch):
    """What each guarded INSERT created, and on which threads they were built."""
    seen = {"created": 0, "built_on": Counter()}
    insert_new, prepare_insert = sync_engine.insert_new, sync_engine.prepare_insert

    def counting_insert(**kwargs):
        created = insert_new(**kwargs)
        seen["created"] += len(created)
        return created

    def noting_prepare(**kwargs):
        seen["built_on"][threading.current_thread() is threading.main_thread()] += 1
        return prepare_insert(**kwargs)

    monkeypatch.setattr(sync_engine, "insert_new", counting_insert)
    monkeypatch.setattr(sync_engine, "prepare_insert", noting_prepare)
    return seen


def after_customers_read(monkeypatch, change):
    """Call `change(partner)` once the engine has read its known customers."""
    original = SyncEngine._customers_known

    def read_then_change(engine):
        known = original(engine)
        change(engine.partner)
        return known

    monkeypatch.setattr(SyncEngine, "_customers_known", read_then_change)


def busiest_company(db) -> tuple[int, int]:
    """(company id, its settled invoices) of the company with the most."""
    counts = Counter(i["companyID"] for i in settled_invoices(db))
    return counts.most_common(1)[0]


def test_a_plain_initial_sync_creates_every_invoice_with_the_guarded_insert(
    partner_a, server, connect, run_now, inserts
):
    run = connect(partner_a, server=server).first_run
    done = run_now(run)

    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    expected = len(settled_invoices(server.db))
    assert Invoice.objects.filter(partner=partner_a).count() == expected
    assert inserts["created"] == expected
    assert done.created == expected + Customer.objects.filter(partner=partner_a).count()
    assert inserts["built_on"][False] > 0  # some on the preparer's thread
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exists()


def test_a_customer_archived_after_the_customers_were_read_gets_no_invoice(
    partner_a, server, connect, run_now, inserts, monkeypatch
):
    company_id, n = busiest_company(server.db)
    after_customers_read(
        monkeypatch,
        lambda partner: Customer.objects.filter(partner=partner, autotask_id=company_id).update(
            archived_at=sync_engine.timezone.now()
        ),
    )
    run = connect(partner_a, server=server).first_run
    done = run_now(run)

    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    mine = Invoice.objects.filter(partner=partner_a)
    assert not mine.filter(customer__autotask_id=company_id).exists()
    assert mine.count() == len(settled_invoices(server.db)) - n
    assert done.skipped_reasons.get("customer archived here") == n
    assert inserts["created"] == mine.count()


def test_a_customer_given_another_currency_meanwhile_gets_its_invoices_in_it(
    partner_a, server, connect, run_now, inserts, monkeypatch
):
    company_id, n = busiest_company(server.db)

    def recurrency(partner):
        customer = Customer.objects.get(partner=partner, autotask_id=company_id)
        other = "EUR" if customer.currency != "EUR" else "GBP"
        Customer.objects.filter(pk=customer.pk).update(currency=other)
        recurrency.to = other

    after_customers_read(monkeypatch, recurrency)
    run = connect(partner_a, server=server).first_run
    done = run_now(run)

    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    theirs = Invoice.objects.filter(partner=partner_a, customer__autotask_id=company_id)
    assert theirs.count() == n
    assert set(theirs.values_list("currency", flat=True)) == {recurrency.to}
    others = Invoice.objects.filter(partner=partner_a).exclude(customer__autotask_id=company_id)
    assert not others.exclude(currency=F("customer__currency")).exists()
    # The guard left exactly those invoices to the upsert.
    assert inserts["created"] == others.count() == len(settled_invoices(server.db)) - n
