"""SY-2: the new-invoice cursor at its edges (RELIABILITY.md §5, sync correctness).

The hourly new-data run reads invoices with `createDateTime >= cursor - OVERLAP` and
`<= settle cut-off` (10 min before it started), paging by id; the cursor it saves is that
cut-off. Each edge below is an invoice that a wrong comparison or a missing overlap loses:

- 600 invoices with one `createDateTime`, so a 500-row page boundary falls inside the group
  (initial run and hourly run);
- an invoice created exactly at the saved cursor, one seen by the run that saved it and one
  that only becomes visible afterwards;
- late invoices (created before the cursor, visible only after the run that saved it) inside
  the overlap, one of them exactly at `cursor - OVERLAP`;
- unsettled invoices (< 10 min old when a run starts): not taken by that run, taken by the
  next one;
- an invoice that becomes visible later than the overlap reaches back: the hourly run cannot see
  it (it is outside its window, by design); the daily unpaid run's id reconcile takes it.

The engine's clock is fixed per run (`execute_run(clock=…)`), so nothing here depends on how
long a run takes. After every run the invoices here must be exactly the expected set: 0 missed,
0 duplicated, and no change-log rows (re-reading an unchanged invoice in the overlap logs
nothing).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from invoices.models import Invoice
from sandbox import wire
from sync.engine import PAGE_SIZE
from sync.models import ChangeLogEntry, SyncRun, SyncState
from sync.services.runs import execute_run
from tests.harness.sync import connect_to

pytestmark = pytest.mark.django_db

GROUP = 600  # > PAGE_SIZE: one createDateTime spans a page boundary
# The product's numbers (PRODUCT.md, issue 5), written here rather than imported from the
# engine: a mutant that shrinks the engine's constant must not shrink the test's timeline.
SETTLE_TIME = timedelta(minutes=10)
OVERLAP = timedelta(hours=2)


@pytest.fixture
def sandbox(make_sandbox):
    # No generated invoices: every invoice of these tests is placed on the timeline by hand.
    # Legacy sandbox: no company 0 (the tenant's own, never invoiced), so companies()[0] invoices.
    return make_sandbox(companies=4, invoices=0, switches={"own_company": False})


def _connect(partner, server):
    conn = connect_to(partner, server.databases[0])
    conn.first_run.delete()  # each run below gets a fixed clock instead
    return conn


def _create(db, company_id: int, created: datetime, n: int = 1) -> list[int]:
    stamp = wire.format_datetime(created)
    return [db.create_invoice(company_id, create_date_time=stamp)["id"] for _ in range(n)]


def _run(partner, kind, at: datetime) -> SyncRun:
    run = SyncRun.objects.create(partner=partner, kind=kind, trigger=SyncRun.Trigger.SCHEDULE)
    run = execute_run(partner=partner, run_id=run.id, clock=lambda: at)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)
    return run


def _assert_exactly(partner, expected: set[int]) -> None:
    ids = list(Invoice.objects.filter(partner=partner).values_list("autotask_id", flat=True))
    duplicated = {i for i, n in Counter(ids).items() if n > 1}
    assert not duplicated, f"duplicated: {sorted(duplicated)[:10]}"
    got = set(ids)
    assert not expected - got, f"missed {len(expected - got)}: {sorted(expected - got)[:10]}"
    assert not got - expected, f"unexpected {len(got - expected)}: {sorted(got - expected)[:10]}"


def _assert_no_invoice_changes(partner) -> None:
    rows = list(
        ChangeLogEntry.objects.filter(partner=partner, record_type="invoice").values_list(
            "autotask_id", "field", "old_value", "new_value"
        )
    )
    assert rows == [], rows[:10]


def test_cursor_edges_nothing_missed_or_duplicated(partner_a, sandbox):
    """Kills: strict `>` on the overlap bound (`Q.gt("createDateTime", cursor - OVERLAP)`):
    `late_at_overlap_edge` is missed by run 2. Kills: no overlap (`OVERLAP = 0`): `late_inside`
    and `late_at_overlap_edge` are missed by run 2. Also kills a strict `<` on the settle
    cut-off (`at_cursor` is missed by run 1), and an unpaid run without the id reconcile
    (`late_past_overlap` is missed by run 4)."""
    db = sandbox.db
    company = db.companies()[0]["id"]
    t1 = timezone.now().astimezone(UTC).replace(microsecond=0) - timedelta(days=1)
    c1 = t1 - SETTLE_TIME  # run 1's settle cut-off: the cursor it saves

    group_a = _create(db, company, c1 - timedelta(minutes=30), GROUP)
    at_cursor = _create(db, company, c1)
    unsettled_1 = _create(db, company, t1 - timedelta(minutes=5))  # 5 min old at run 1

    _connect(partner_a, sandbox)
    run1 = _run(partner_a, SyncRun.Kind.INITIAL, t1)
    expected = {*group_a, *at_cursor}
    _assert_exactly(partner_a, expected)
    assert run1.created == len(expected) + len(db.companies())
    state = SyncState.objects.get(partner=partner_a)
    assert state.invoices_created_cursor == c1

    # Visible only now, created before run 1's cursor.
    late_at_cursor = _create(db, company, c1)
    late_inside = _create(db, company, c1 - timedelta(hours=1))
    late_at_overlap_edge = _create(db, company, c1 - OVERLAP)
    late_past_overlap = _create(db, company, c1 - OVERLAP - timedelta(milliseconds=1))
    # New since run 1.
    t2 = t1 + timedelta(hours=1)
    c2 = t2 - SETTLE_TIME
    group_b = _create(db, company, c1 + timedelta(minutes=20), GROUP)
    unsettled_2 = _create(db, company, t2 - timedelta(minutes=9, seconds=59))

    run2 = _run(partner_a, SyncRun.Kind.NEW_DATA, t2)
    new_in_run2 = {
        *late_at_cursor,
        *late_inside,
        *late_at_overlap_edge,
        *group_b,
        *unsettled_1,
    }
    expected |= new_in_run2
    _assert_exactly(partner_a, expected)  # past the overlap and unsettled_2: not yet
    assert run2.created == len(new_in_run2)
    assert run2.updated == 0
    assert SyncState.objects.get(partner=partner_a).invoices_created_cursor == c2

    t3 = t2 + timedelta(hours=1)
    run3 = _run(partner_a, SyncRun.Kind.NEW_DATA, t3)
    expected |= set(unsettled_2)  # settled now
    _assert_exactly(partner_a, expected)
    assert run3.created == 1 and run3.updated == 0

    # The daily unpaid run reconciles ids: the one invoice the hourly window cannot see.
    run4 = _run(partner_a, SyncRun.Kind.UNPAID, t3 + timedelta(minutes=5))
    expected |= set(late_past_overlap)
    _assert_exactly(partner_a, expected)
    assert run4.created == 1 and run4.updated == 0

    # Everything again: nothing new, nothing duplicated, nothing logged.
    _run(partner_a, SyncRun.Kind.NEW_DATA, t3 + timedelta(hours=1))
    _run(partner_a, SyncRun.Kind.UNPAID, t3 + timedelta(hours=1, minutes=5))
    _assert_exactly(partner_a, expected)
    _assert_no_invoice_changes(partner_a)
    assert len(expected) == 2 * GROUP + 7
    assert GROUP > PAGE_SIZE
