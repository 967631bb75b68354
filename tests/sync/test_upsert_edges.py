"""SY-4: the upsert's edges (RELIABILITY.md §1.6 and §5, sync correctness).

The invoice upsert (sync/upsert.py) dedupes a page by Autotask id (the last occurrence wins),
leaves archived rows alone (R9) and leaves invoices paid here alone (issue 5: paid invoices are
not rewritten by later Autotask edits), while an invoice only partly paid here is still unpaid
and takes Autotask's amount and due date (R5, R6) without losing its payments.

Kills: the upsert replaced by Django's plain
`bulk_create(update_conflicts=True, unique_fields=["partner", "autotask_id"], update_fields=…)`:
a key twice in one statement fails it (PostgreSQL 21000, "ON CONFLICT DO UPDATE command cannot
affect row a second time"), and it overwrites archived and paid-here rows.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from integrations.autotask.client import AutotaskClient
from invoices.models import Invoice, InvoiceStatus
from invoices.services import SYNCED_FIELDS, invoice_archive, protect_invoice
from payments.services.ledger import payment_record
from sandbox import wire
from sync.models import ChangeLogEntry, SyncRun
from sync.upsert import HOLD, fingerprint, upsert_page

pytestmark = pytest.mark.django_db


def _ok(run: SyncRun) -> SyncRun:
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    return run


def _row(invoice: Invoice, **changes) -> dict:
    """An upsert row for an invoice as the engine builds it."""
    values = {name: getattr(invoice, name) for name in SYNCED_FIELDS}
    values.update(changes)
    return {"autotask_id": invoice.autotask_id, "customer_id": invoice.customer_id, **values}


def _upsert(partner, rows: list[dict], run=None, **options):
    with transaction.atomic():
        return upsert_page(
            **options,
            model=Invoice,
            partner=partner,
            rows=rows,
            tracked_fields=SYNCED_FIELDS,
            record_type="invoice",
            run=run,
            protect=protect_invoice,
            extra_on_create=lambda row: {"source": "autotask", "customer_id": row["customer_id"]},
        )


def _all_columns(invoice_id: int) -> dict:
    return Invoice.objects.filter(pk=invoice_id).values().get()


@pytest.mark.parametrize("insert_first", [False, True], ids=["lock_first", "insert_first"])
def test_same_id_twice_in_one_page_is_upserted_once_last_version_wins(
    partner_a, connect, run_now, insert_first
):
    """Kills: plain `bulk_create(update_conflicts=True)` (the page fails with PostgreSQL 21000),
    and a dedupe that keeps the first occurrence instead of the last. Both paths: a new row
    (insert) and an existing row (update); both orders (the initial sync inserts first and
    looks up only the conflicts)."""
    run_now(connect(partner_a).first_run)
    existing = Invoice.objects.filter(partner=partner_a, status=InvoiceStatus.OPEN).first()
    fresh_id = Invoice.objects.order_by("-autotask_id").first().autotask_id + 1000
    fresh = _row(existing, autotask_id=fresh_id)
    fresh.update(total=Decimal("10.00"), autotask_invoice_number="F-1", number="F-1")
    fresh_last = {**fresh, "total": Decimal("20.00")}
    old_total = existing.total
    rows = [
        _row(existing, total=Decimal("1.00")),
        fresh,
        _row(existing, total=old_total + Decimal("5.00"), due_date=date(2031, 1, 31)),
        fresh_last,
    ]
    run = SyncRun.objects.create(partner=partner_a, kind="initial", trigger="ops")

    result = _upsert(partner_a, rows, run=run, insert_first=insert_first)

    assert (result.created, result.updated, result.unchanged) == (1, 1, 0)
    assert Invoice.objects.filter(partner=partner_a, autotask_id=fresh_id).count() == 1
    assert Invoice.objects.get(partner=partner_a, autotask_id=fresh_id).total == Decimal("20.00")
    existing.refresh_from_db()
    assert existing.total == old_total + Decimal("5.00")
    assert existing.due_date == date(2031, 1, 31)
    logged = sorted(
        ChangeLogEntry.objects.filter(run=run).values_list("field", "old_value", "new_value")
    )
    # One entry per changed field, from the stored value to the last version: never the
    # intermediate 1.00 of the first occurrence.
    assert logged[0][0] == "due_date" and logged[0][2] == "2031-01-31"
    assert logged[1:] == [("total", str(old_total), str(old_total + Decimal("5.00")))]
    assert len(logged) == 2


def test_same_invoice_twice_in_a_page_from_autotask_does_not_fail_the_sync(
    partner_a, connect, run_now, new_run, autotask_sandbox, monkeypatch
):
    """Kills: plain `bulk_create(update_conflicts=True)` (the whole page, and so the run, fails
    on the repeated id). Autotask pages are not guaranteed free of repeats; here every invoice
    page carries its first invoice again at its end, with another total: the sync succeeds and
    each invoice is stored once, with its last version."""
    autotask_sandbox.db.set_switches(own_company=False)  # legacy sandbox: no company 0
    bumped: dict[int, float] = {}
    real_iter_pages = AutotaskClient.iter_pages

    def iter_pages_with_repeats(self, entity, query=None, **kwargs):
        for page in real_iter_pages(self, entity, query, **kwargs):
            if entity == "Invoices" and page.items:
                first = dict(page.items[0])
                first["invoiceTotal"] = round(first["invoiceTotal"] + 7, 2)
                bumped[first["id"]] = first["invoiceTotal"]
                page = dataclasses.replace(page, items=(*page.items, first))
            yield page

    monkeypatch.setattr(AutotaskClient, "iter_pages", iter_pages_with_repeats)
    run = _ok(run_now(connect(partner_a).first_run))
    ids = list(Invoice.objects.filter(partner=partner_a).values_list("autotask_id", flat=True))
    assert len(ids) == len(set(ids)) == run.created - len(autotask_sandbox.db.companies())
    assert bumped
    for autotask_id, total in bumped.items():
        stored = Invoice.objects.get(partner=partner_a, autotask_id=autotask_id).total
        assert stored == Decimal(str(total))

    # The same on the update path: a rerun sees the repeat again (and Autotask's real total
    # first), still one row, still the last version, nothing logged (it did not change).
    rerun = _ok(run_now(new_run(partner_a, SyncRun.Kind.INITIAL)))
    assert rerun.created == 0
    assert Invoice.objects.filter(partner=partner_a).count() == len(ids)
    for autotask_id, total in bumped.items():
        stored = Invoice.objects.get(partner=partner_a, autotask_id=autotask_id).total
        assert stored == Decimal(str(total))
    assert not ChangeLogEntry.objects.filter(run=rerun).exists()


def test_archived_invoice_is_byte_identical_over_three_syncs(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    """Kills: plain `bulk_create(update_conflicts=True)` (no `DO UPDATE … WHERE`: it rewrites
    the archived row's total, due date and number, Django ticket #36567). Each of the three
    syncs really reads the invoice (its skip reason is counted) and every column of the row,
    `updated_at` and the fingerprint included, stays the same."""
    db = autotask_sandbox.db
    # Legacy sandbox: no company 0 (so companies()[0] invoices), posted invoices edited in place.
    db.set_switches(own_company=False, invoice_edit_in_place=True)
    company = db.companies()[0]["id"]
    # Created 30 min ago: settled for the initial sync, inside the hourly run's overlap.
    created = wire.format_datetime(timezone.now() - timedelta(minutes=30))
    target = db.create_invoice(company, create_date_time=created)["id"]
    run_now(connect(partner_a).first_run)
    invoice = Invoice.objects.get(partner=partner_a, autotask_id=target)
    invoice_archive(partner=partner_a, invoice_id=invoice.pk)
    before = _all_columns(invoice.pk)
    assert before["archived_at"] is not None

    db.set_invoice_total(target, 4321.09)
    db.set_invoice_due_date(target, "2031-03-31")
    db.update_invoice(target, invoiceNumber="RENUMBERED-1")
    kinds = (SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA, SyncRun.Kind.INITIAL)
    for kind in kinds:
        run = _ok(run_now(new_run(partner_a, kind)))
        assert _all_columns(invoice.pk) == before, kind
        assert run.skipped_reasons.get("archived here", 0) >= 1, (kind, run.skipped_reasons)
    assert not ChangeLogEntry.objects.filter(record_type="invoice", record_id=invoice.pk).exists()
    # A daily unpaid run does not re-read it (archived) nor revive it.
    _ok(run_now(new_run(partner_a, SyncRun.Kind.UNPAID)))
    assert _all_columns(invoice.pk) == before


def test_paid_here_keeps_its_payments_and_status_when_autotask_changes_the_amount(
    partner_a, connect, run_now, new_run, autotask_sandbox
):
    """Kills: plain `bulk_create(update_conflicts=True)` (it rewrites the total of an invoice
    paid here in full, which re-opens it as partially paid). R5/R6 and issue 5: an invoice paid
    here in full is paid, and later Autotask edits do not rewrite it (total, due date kept,
    nothing logged); one paid here only in part is still unpaid, so Autotask's new amount and
    due date apply, and its payments here stay (paid_here kept, outstanding = new total -
    paid here)."""
    db = autotask_sandbox.db
    db.set_switches(invoice_edit_in_place=True)  # legacy sandbox: edit in place
    run_now(connect(partner_a).first_run)
    open_invoices = Invoice.objects.filter(
        partner=partner_a, status=InvoiceStatus.OPEN, total__gt=20
    ).order_by("autotask_id")
    paid, partial = open_invoices[0], open_invoices[1]
    payment_record(partner=partner_a, invoice_id=paid.pk, amount=paid.total)
    half = (partial.total / 2).quantize(Decimal("0.01"))
    payment_record(partner=partner_a, invoice_id=partial.pk, amount=half)
    paid_before = _all_columns(paid.pk)
    assert paid_before["status"] == InvoiceStatus.PAID
    assert paid_before["paid_here"] == paid.total
    partial.refresh_from_db()
    assert partial.status == InvoiceStatus.PARTIALLY_PAID

    db.set_invoice_total(paid.autotask_id, float(paid.total + 100))
    db.set_invoice_due_date(paid.autotask_id, "2031-05-31")
    new_partial_total = partial.total + Decimal("40.00")
    db.set_invoice_total(partial.autotask_id, float(new_partial_total))
    db.set_invoice_due_date(partial.autotask_id, "2031-06-30")

    # A resync reads both; the daily run reads the partly paid one (the paid one is not unpaid).
    resync = _ok(run_now(new_run(partner_a, SyncRun.Kind.INITIAL)))
    _ok(run_now(new_run(partner_a, SyncRun.Kind.UNPAID)))

    assert _all_columns(paid.pk) == paid_before
    assert not ChangeLogEntry.objects.filter(record_type="invoice", record_id=paid.pk).exists()
    assert resync.skipped_reasons.get("paid here", 0) >= 1, resync.skipped_reasons

    partial.refresh_from_db()
    assert partial.paid_here == half
    assert partial.total == new_partial_total
    assert partial.due_date == date(2031, 6, 30)
    assert partial.status == InvoiceStatus.PARTIALLY_PAID
    assert partial.outstanding == new_partial_total - half
    logged = set(
        ChangeLogEntry.objects.filter(record_type="invoice", record_id=partial.pk).values_list(
            "field", "new_value"
        )
    )
    assert logged == {("total", str(new_partial_total)), ("due_date", "2031-06-30")}


@pytest.mark.parametrize("insert_first", [False, True], ids=["lock_first", "insert_first"])
def test_existing_rows_only_are_adjusted_and_held_rows_never_created(
    partner_a, connect, run_now, insert_first
):
    """`adjust_existing` (the reconciliation rule) sees the rows that exist here, and what it
    returns is what is compared; a held row that does not exist is never created; the
    new row is created once with the fingerprint of its values. Same in both orders."""
    run_now(connect(partner_a).first_run)
    existing = Invoice.objects.filter(partner=partner_a, status=InvoiceStatus.OPEN).first()
    top = Invoice.objects.order_by("-autotask_id").first().autotask_id
    fresh = _row(existing, autotask_id=top + 1, number="N-1", autotask_invoice_number="N-1")
    held = {**_row(existing, autotask_id=top + 2, number="H-1"), HOLD: "customer archived here"}
    seen = []

    def adjust(rows):
        seen.append(sorted(r["autotask_id"] for r in rows))
        return [{**r, "due_date": date(2032, 2, 2)} for r in rows]

    changed = _row(existing, total=existing.total + 1)
    result = _upsert(
        partner_a,
        [changed, fresh, held],
        run=None,
        adjust_existing=adjust,
        insert_first=insert_first,
    )

    assert seen == [[existing.autotask_id]]
    assert (result.created, result.updated) == (1, 1)
    assert result.skipped == {"customer archived here": 1}
    assert not Invoice.objects.filter(partner=partner_a, autotask_id=top + 2).exists()
    existing.refresh_from_db()
    assert existing.due_date == date(2032, 2, 2)  # what adjust returned was applied
    assert existing.total == changed["total"]
    created = Invoice.objects.get(partner=partner_a, autotask_id=top + 1)
    assert created.autotask_fingerprint == fingerprint(
        {name: fresh[name] for name in SYNCED_FIELDS}
    )
    assert set(result.ids_by_autotask_id) == {existing.autotask_id, top + 1}
