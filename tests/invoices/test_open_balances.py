"""The open balances PostgreSQL keeps (invoices.models.OpenBalance, migration 0005): every
kind of invoice write keeps them equal to the invoices they stand for, folding keeps the sums
and never blocks a writer, and the customers list sorted by outstanding reads them instead of
the invoices (issue 19: ~120 ms → a few for a 200,000-invoice partner, bench/list_scale.py).
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app as celery_app
from config.listing import parse_sort
from customers.models import Customer
from invoices import selectors
from invoices.models import Invoice, InvoiceStatus, OpenBalance
from invoices.selectors import CUSTOMER_DEFAULT_SORT, CUSTOMER_SORTS
from invoices.services import invoice_archive, open_balances_fold
from payments.services.ledger import payment_delete, payment_record
from sync.models import SyncRun
from tests.factories import create_customer, create_invoice
from tests.harness.balances import balance_mismatches, counted_balances, kept_balances
from tests.harness.threads import in_thread

D = Decimal


@pytest.fixture
def book(partner_a, partner_b):
    """Two customers of partner A in two currencies, and partner B's own invoice."""
    acme = create_customer(partner_a, name="Acme")
    zeta = create_customer(partner_a, name="Zeta")
    invoices = [
        create_invoice(partner_a, customer=acme, total="100.00"),
        create_invoice(partner_a, customer=acme, total="250.00"),
        create_invoice(partner_a, customer=acme, total="40.00", currency="EUR"),
        create_invoice(partner_a, customer=zeta, total="75.50"),
        create_invoice(partner_a, customer=zeta, total="0.00"),
    ]
    create_invoice(partner_b, total="999.00")
    return acme, zeta, invoices


@pytest.mark.django_db
def test_every_kind_of_invoice_write_keeps_the_balances(partner_a, partner_b, book):
    acme, zeta, (a1, a2, a_eur, z1, z_zero) = book
    assert kept_balances(partner_a) == {
        (acme.pk, "USD"): (D("350.00"), 2),
        (acme.pk, "EUR"): (D("40.00"), 1),
        (zeta.pk, "USD"): (D("75.50"), 1),  # an invoice of 0 is paid: not counted
    }

    def agree():
        for partner in (partner_a, partner_b):
            assert balance_mismatches(partner) == {}

    payment = payment_record(partner=partner_a, invoice_id=a1.pk, amount=D("30.00"))  # partial
    agree()
    payment_record(partner=partner_a, invoice_id=a2.pk, amount=D("250.00"))  # paid in full
    agree()
    payment_delete(partner=partner_a, payment_id=payment.pk)  # open again
    agree()
    invoice_archive(partner=partner_a, invoice_id=z1.pk)
    agree()
    invoice_archive(partner=partner_a, invoice_id=z1.pk, archived=False)
    agree()
    Invoice.objects.filter(pk=a_eur.pk).update(voided=True, voided_at=timezone.now())
    agree()
    Invoice.objects.filter(pk=a1.pk).update(paid_in_autotask_on="2026-02-01")
    agree()
    Invoice.objects.filter(pk=a1.pk).update(paid_in_autotask_on=None, total=D("120.00"))
    agree()
    Invoice.objects.filter(pk=z1.pk).update(customer=acme, currency="GBP")  # moved, re-priced
    agree()
    Invoice.objects.filter(partner=partner_a).update(total=D("10.00"))  # one statement, many
    agree()
    z_zero.delete()  # open since the update above
    agree()
    Invoice.objects.bulk_create(
        [
            Invoice(
                partner=partner_a,
                customer=zeta,
                source="local",
                number=f"L-{n}",
                invoice_date="2026-03-01",
                total=D("5.00"),
            )
            for n in range(3)
        ]
    )
    agree()
    with transaction.atomic():
        Invoice.objects.filter(pk=a1.pk).update(total=D("500.00"))
        with pytest.raises(RuntimeError), transaction.atomic():
            Invoice.objects.filter(pk=a1.pk).update(total=D("1.00"))
            raise RuntimeError("rolled back: its balance rows go with it")
    agree()
    assert kept_balances(partner_a)[(zeta.pk, "USD")] == (D("15.00"), 3)
    assert kept_balances(partner_b) == counted_balances(partner_b) != {}


@pytest.mark.django_db
def test_a_sync_and_its_writes_keep_the_balances(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    """The sync's own writers (insert-first pages, locked updates, the reconcile rule's voids)
    on the sandbox's invoices, then payments and Autotask's changes read back."""
    db = autotask_sandbox.db
    run = run_now(connect(partner_a).first_run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    assert len(kept_balances(partner_a)) >= 2
    assert balance_mismatches(partner_a) == {}

    open_rows = list(
        Invoice.objects.filter(partner=partner_a, status=InvoiceStatus.OPEN, total__gt=20).order_by(
            "autotask_id"
        )[:4]
    )
    payment_record(partner=partner_a, invoice_id=open_rows[0].pk, amount=open_rows[0].total)
    payment_record(partner=partner_a, invoice_id=open_rows[1].pk, amount=D("10.00"))
    db.set_invoice_paid_date(open_rows[2].autotask_id, "2026-11-30")
    db.void_invoice(open_rows[3].autotask_id)
    for kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.UNPAID):
        run = run_now(new_run(partner_a, kind))
        assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
        assert balance_mismatches(partner_a) == {}
    assert Invoice.objects.get(pk=open_rows[3].pk).voided


@pytest.mark.django_db
def test_folding_leaves_one_row_per_customer_and_currency_and_the_same_sums(
    partner_a, partner_b, book
):
    acme, zeta, (a1, a2, *_rest) = book
    payment_record(partner=partner_a, invoice_id=a1.pk, amount=D("100.00"))
    payment_record(partner=partner_a, invoice_id=a2.pk, amount=D("250.00"))  # Acme's USD: 0
    before = {p.pk: kept_balances(p) for p in (partner_a, partner_b)}
    assert OpenBalance.objects.filter(partner_id=partner_a.pk).count() > 3

    assert open_balances_fold(batch=2) == 3  # 3 (partner, customer) pairs, 2 at a time

    assert {p.pk: kept_balances(p) for p in (partner_a, partner_b)} == before
    rows = OpenBalance.objects.filter(partner_id=partner_a.pk)
    assert sorted(rows.values_list("customer_id", "currency", "amount", "invoices", "folded")) == [
        (acme.pk, "EUR", D("40.00"), 1, True),
        (zeta.pk, "USD", D("75.50"), 1, True),
    ]  # Acme's USD added up to nothing and is gone
    assert not OpenBalance.objects.filter(folded=False).exists()
    assert open_balances_fold() == 0


@pytest.mark.django_db(transaction=True)
def test_a_fold_in_progress_blocks_no_writer_and_loses_nothing(
    partner_a, partner_b, book, join_threads
):
    """A fold holding its rows (its transaction open) beside a payment on the same customer
    (`lock_timeout`: a writer made to wait fails instead of hanging the test), then a second
    fold that has to wait for the first: the sums are the invoices'."""
    acme, _zeta, (a1, *_rest) = book
    Invoice.objects.filter(pk=a1.pk).update(total=D("101.00"))
    folded, release = threading.Event(), threading.Event()

    def slow_fold():
        with transaction.atomic():
            open_balances_fold()
            folded.set()
            assert release.wait(30)

    first, first_result = in_thread(slow_fold)
    assert folded.wait(30)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = '2s'")
        payment_record(partner=partner_a, invoice_id=a1.pk, amount=D("1.00"))
    second, second_result = in_thread(open_balances_fold)
    second.join(0.5)
    assert second.is_alive()  # waits for the first fold (folds take turns)
    release.set()
    for thread in (first, second):
        thread.join(30)
        assert not thread.is_alive()
    assert "error" not in first_result and "error" not in second_result
    for partner in (partner_a, partner_b):
        assert balance_mismatches(partner) == {}
    assert kept_balances(partner_a)[(acme.pk, "USD")] == (D("350.00"), 2)
    open_balances_fold()
    assert OpenBalance.objects.filter(partner_id=partner_a.pk, customer=acme).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["-outstanding", "outstanding", "name"])
def test_customers_by_outstanding_read_the_balances_and_match_the_invoices(
    partner_a, partner_b, book, monkeypatch, sort
):
    _acme, _zeta, (a1, *_rest) = book
    create_customer(partner_a, name="Quiet")  # no invoice: owes 0
    payment_record(partner=partner_a, invoice_id=a1.pk, amount=D("100.00"))

    def page():
        qs = selectors.customer_list(partner=partner_a, sort=sort)
        rows = [(c.name, c.outstanding_total) for c in qs]
        return rows, selectors.customers_outstanding(partner=partner_a, customers=qs)

    with CaptureQueriesContext(connection) as queries:
        kept = page()
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "invoices_openbalance" in sql and "invoices_invoice" not in sql

    monkeypatch.setattr(selectors, "balances_kept", lambda: False)  # the SQLite path's sums
    assert page() == kept
    want = {"-outstanding": ["Acme", "Zeta", "Quiet"], "outstanding": ["Quiet", "Zeta", "Acme"]}
    assert [name for name, _ in kept[0]] == want.get(sort, ["Acme", "Quiet", "Zeta"])
    assert dict(kept[0]) == {"Acme": D("290.00"), "Zeta": D("75.50"), "Quiet": D("0.00")}
    assert kept[1] == (
        [
            {"currency": "EUR", "n": 1, "outstanding": D("40.00")},
            {"currency": "USD", "n": 2, "outstanding": D("325.50")},
        ],
        True,
    )


@pytest.mark.django_db
def test_the_customers_totals_row_is_complete_above_the_list_cap(partner_a, book, monkeypatch):
    """The invoices' totals stop at LIST_CAP rows (no totals row); the balances have none."""
    monkeypatch.setattr(selectors, "LIST_CAP", 2)
    customers = selectors.customer_list(partner=partner_a)
    rows, complete = selectors.customers_outstanding(partner=partner_a, customers=customers)
    assert complete and sum(r["n"] for r in rows) == 4
    monkeypatch.setattr(selectors, "balances_kept", lambda: False)
    assert selectors.customers_outstanding(partner=partner_a, customers=customers)[1] is False


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["-outstanding", "outstanding"])
def test_pages_by_outstanding_read_the_balances_in_the_querysets_order(
    partner_a, partner_b, client_a, sort
):
    """The customers list sorted by outstanding pages through `ByOutstanding` (one statement
    over the balances for the page's ids): the same customers, sums and order, page by page,
    as the queryset's own sort, ties by id, filters kept, nothing of partner B."""
    owed = {"Ann": "50.00", "Bob": "20.00", "Bea": "50.00", "Cid": "20.00", "Dan": "75.00"}
    for name, total in owed.items():
        create_invoice(partner_a, customer=create_customer(partner_a, name=name), total=total)
    create_customer(partner_a, name="Eve")  # owes nothing
    gone = create_customer(partner_a, name="Fay")
    create_invoice(partner_a, customer=gone, total="999.00")
    gone.archived_at = timezone.now()
    gone.save(update_fields=["archived_at"])
    create_invoice(partner_b, customer=create_customer(partner_b, name="Bob"), total="5000.00")
    open_balances_fold()
    create_invoice(partner_a, customer=Customer.objects.get(name="Eve"), total="1.00")  # unfolded
    order = parse_sort(sort, CUSTOMER_SORTS, CUSTOMER_DEFAULT_SORT).order_by

    for search, expected in (("", 6), ("b", 2)):  # Fay archived: not listed
        qs = selectors.customer_list(partner=partner_a, search=search, sort=sort)
        rows = selectors.customer_page_rows(qs, partner=partner_a, order_by=order)
        assert isinstance(rows, selectors.ByOutstanding)
        pages = Paginator(rows, 2)
        got = [(c.name, c.outstanding_total) for n in pages.page_range for c in pages.page(n)]
        assert got == [(c.name, c.outstanding_total) for c in qs]
        assert pages.count == len(got) == expected
        assert rows[1].name == got[1][0]

    ids = dict(Customer.objects.for_partner(partner_a).values_list("name", "id"))
    want = sorted(
        [
            ("Ann", D(50)),
            ("Bob", D(20)),
            ("Bea", D(50)),
            ("Cid", D(20)),
            ("Dan", D(75)),
            ("Eve", D(1)),
        ],
        key=lambda row: (row[1], ids[row[0]]),
        reverse=sort.startswith("-"),
    )
    response = client_a.get(reverse("dashboard:customers"), {"sort": sort})
    page = response.context["page"]
    assert isinstance(page.paginator.object_list, selectors.ByOutstanding)
    assert [(c.name, c.outstanding_total) for c in page] == want


@pytest.mark.django_db
def test_beat_folds_the_balances_every_minute(partner_a, partner_b, book):
    """The migration's beat entry names a task the workers know, on a queue they consume, and
    the task folds: what the lists' speed relies on."""
    entry = PeriodicTask.objects.get(task="invoices.fold_open_balances")
    assert entry.enabled and (entry.interval.every, entry.interval.period) == (60, "seconds")
    celery_app.loader.import_default_modules()  # what a worker does at start (autodiscovery)
    task = celery_app.tasks["invoices.fold_open_balances"]
    assert celery_app.amqp.router.route({}, task.name)["queue"].name == "default"
    before = {p.pk: kept_balances(p) for p in (partner_a, partner_b)}
    assert task.apply().get() == 3
    assert not OpenBalance.objects.filter(folded=False).exists()
    assert {p.pk: kept_balances(p) for p in (partner_a, partner_b)} == before
