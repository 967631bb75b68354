"""SY-8: the daily unpaid re-read corrects drift on 1,000 invoices (RELIABILITY.md §5).

1,000 unpaid invoices are synced, a few are paid here (some in full, some in part), then every
one of them drifts in Autotask: amount, due date, paidDate (paid in Autotask), a credit (a
negative line, so a lower total), or amount and due date together. One unpaid run must apply
100 % of the drift to the invoices that are still unpaid here (R4, R5, R6), log each changed
field once with its old and new value, leave the invoices paid here in full exactly as they
were (issue 5: paid invoices are not rewritten), keep the payments of the partly paid ones, and
cost about one request per 400 unpaid invoices (ids batched ≤ 400 per `in`).
"""

from __future__ import annotations

import math
from datetime import UTC, date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from invoices.models import Invoice, InvoiceStatus
from invoices.services import money
from payments.services.ledger import payment_record
from sandbox import wire
from sync.models import ChangeLogEntry, SyncRun
from sync.services.runs import execute_run
from tests.harness.sync import connect_to

pytestmark = pytest.mark.django_db

N = 1_000
IN_LIMIT = 400


@pytest.fixture
def sandbox(make_sandbox):
    # Legacy sandbox: no company 0, totals/due dates edited and credited in place.
    legacy = {"own_company": False, "invoice_edit_in_place": True, "credit_in_place": True}
    return make_sandbox(companies=6, invoices=0, switches=legacy)


def _connect(partner, server):
    return connect_to(partner, server.databases[0])


def _run(partner, run: SyncRun) -> SyncRun:
    run = execute_run(partner=partner, run_id=run.id)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    return run


def _in_values(entry: dict) -> list[int] | None:
    """The id list of an `id in (…)` invoice query in the sandbox's request log."""
    for item in (entry.get("body") or {}).get("filter") or []:
        if item.get("op") == "in" and (item.get("field") or "").lower() == "id":
            return item["value"]
    return None


def _as_date(wire_value: str | None) -> date | None:
    return date.fromisoformat(wire_value[:10]) if wire_value else None


def test_unpaid_rereads_fix_all_drift_log_old_and_new_and_keep_paid_here(partner_a, sandbox):
    """Kills: an unpaid re-read of `status = open` only (the partly-paid-here invoices keep
    their old amount and paidDate); `in` batches over 400 ids (`IN_BATCH = 500`); a change log
    without the old value. The invoices paid here in full are compared column by column."""
    db = sandbox.db
    companies = [c["id"] for c in db.companies()]
    start = timezone.now().astimezone(UTC) - timedelta(days=60)
    ids = []
    for i in range(N):
        created = wire.format_datetime(start + timedelta(minutes=85 * i))  # over ~59 days
        record = db.create_invoice(
            companies[i % len(companies)],
            lines=[{"quantity": 1, "rate": 100 + i + (i % 100) / 100}],
            invoice_date=(start + timedelta(minutes=85 * i)).date(),
            payment_term=1 + i % 4,
            create_date_time=created,
        )
        ids.append(record["id"])
    _run(partner_a, _connect(partner_a, sandbox).first_run)
    local = {inv.autotask_id: inv for inv in Invoice.objects.filter(partner=partner_a)}
    assert set(local) == set(ids)
    assert all(inv.status == InvoiceStatus.OPEN for inv in local.values())

    # Paid here: 11 in full, 12 in part, spread over every kind of drift below.
    full = set(ids[3::97])
    part = set(ids[7::89]) - full
    assert len(full) == 11 and len(part) == 12
    for autotask_id in full:
        inv = local[autotask_id]
        payment_record(partner=partner_a, invoice_id=inv.pk, amount=inv.total)
    for autotask_id in part:
        inv = local[autotask_id]
        payment_record(partner=partner_a, invoice_id=inv.pk, amount=Decimal("30.00"))
    before = {inv["autotask_id"]: inv for inv in Invoice.objects.filter(partner=partner_a).values()}

    # Drift on all 1,000 in Autotask.
    drift: dict[int, set[str]] = {}
    for i, autotask_id in enumerate(ids):
        kind = i % 5
        old = before[autotask_id]
        if kind == 0:
            db.set_invoice_total(autotask_id, float(old["total"] + Decimal("13.57")))
            drift[autotask_id] = {"total"}
        elif kind == 1:
            db.set_invoice_due_date(autotask_id, old["due_date"] + timedelta(days=15 + i % 7))
            drift[autotask_id] = {"due_date"}
        elif kind == 2:
            db.set_invoice_paid_date(autotask_id, date(2026, 1, 1) + timedelta(days=i % 300))
            drift[autotask_id] = {"paid_in_autotask_on"}
        elif kind == 3:
            db.add_credit(autotask_id, 10.00, "Goodwill credit")
            drift[autotask_id] = {"total"}
        else:
            db.set_invoice_total(autotask_id, float(old["total"] - Decimal("0.01")))
            db.set_invoice_due_date(autotask_id, "2031-12-31")
            drift[autotask_id] = {"total", "due_date"}
    assert {len(fields) for fields in drift.values()} == {1, 2}

    db.reset_counters()
    run = _run(partner_a, SyncRun.objects.create(partner=partner_a, kind="unpaid", trigger="ops"))

    # 100 % of the drift applied to every invoice not paid here in full.
    after = {inv["autotask_id"]: inv for inv in Invoice.objects.filter(partner=partner_a).values()}
    expected_log = set()
    for autotask_id in ids:
        old, new = before[autotask_id], after[autotask_id]
        if autotask_id in full:
            assert new == old, f"paid here in full, rewritten: {autotask_id}"
            continue
        at = db.get_invoice(autotask_id)
        assert new["total"] == money(Decimal(str(at["invoiceTotal"]))), autotask_id
        assert new["due_date"] == _as_date(at["dueDate"]), autotask_id
        assert new["paid_in_autotask_on"] == _as_date(at["paidDate"]), autotask_id
        assert new["paid_here"] == old["paid_here"], autotask_id  # payments here kept
        changed = {f for f in ("total", "due_date", "paid_in_autotask_on") if new[f] != old[f]}
        assert changed == drift[autotask_id], autotask_id
        for name in changed:
            old_text = None if old[name] is None else str(old[name])
            expected_log.add((autotask_id, name, old_text, str(new[name])))
        if new["paid_in_autotask_on"] is not None:
            assert (new["status"], new["outstanding"]) == (InvoiceStatus.PAID, 0)
        elif autotask_id in part:
            assert new["status"] == InvoiceStatus.PARTIALLY_PAID
            assert new["outstanding"] == new["total"] - Decimal("30.00")
        else:
            assert (new["status"], new["outstanding"]) == (InvoiceStatus.OPEN, new["total"])

    logged = list(
        ChangeLogEntry.objects.filter(partner=partner_a, run=run).values_list(
            "autotask_id", "field", "old_value", "new_value"
        )
    )
    assert len(logged) == len(set(logged))  # each change once
    assert set(logged) == expected_log  # and nothing else (no entry for the paid-here ones)
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exclude(run=run).exists()
    assert run.updated == N - len(full)

    # Cost: ids batched ≤ 400 per `in`, each invoice asked for once: the unpaid ones and,
    # in the same batches, those paid here in the last 60 days (issue 16: un-paying in
    # Autotask, our own pending write-backs; the rule kept them as they were above).
    batches = [v for v in map(_in_values, db.requests(entity="Invoices")) if v is not None]
    assert all(len(batch) <= IN_LIMIT for batch in batches)
    asked = [i for batch in batches for i in batch]
    assert sorted(asked) == sorted(ids)
    # + payment terms, + the id reconcile's list of recent invoices (one page here).
    assert run.requests_used == len(db.requests())
    assert run.requests_used <= math.ceil(N / IN_LIMIT) + 3

    # Run again: nothing left to fix, nothing logged.
    again = _run(partner_a, SyncRun.objects.create(partner=partner_a, kind="unpaid", trigger="ops"))
    assert again.updated == 0 and again.created == 0
    assert not ChangeLogEntry.objects.filter(run=again).exists()
    assert {
        inv["autotask_id"]: inv for inv in Invoice.objects.filter(partner=partner_a).values()
    } == after
