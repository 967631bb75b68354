"""Issue 19: the initial sync reads invoices in id ranges, up to 3 requests in flight
(sync/ranges.py; the decision in sync/engine.py's docstring).

Against the in-process sandbox: every invoice exactly once across the ranges, with gaps and
with ids beyond the estimated span (the last range is open-ended); a run stopped mid-range
resumes every range after its last committed page and reads no committed invoice again; never
more than 3 requests in flight per endpoint (the sandbox's own record, `in_flight_peak`); at
most 2 requests more than one query would use. Results not in id order (switch
`result_order="scrambled"`): one query, no split, the cursor never moves.
"""

from __future__ import annotations

import threading

import pytest

from integrations.autotask.client import AutotaskClient
from integrations.autotask.errors import AutotaskTransientError
from invoices.models import Invoice
from sync.engine import SyncEngine
from sync.models import ChangeLogEntry, SyncRun
from sync.ranges import plan_ranges
from sync.services.leases import RetryLater

from .test_concurrency import page_requests, settled_invoices

pytestmark = pytest.mark.django_db

INVOICES = 6_000


def settled_ids(db) -> list[int]:
    return sorted(i["id"] for i in settled_invoices(db))


def invoice_posts(db) -> list[dict]:
    """Every Invoices query request: pages and counts."""
    return [e for e in db.requests(entity="Invoices", method="POST") if "/query" in e["path"]]


def count_requests(db) -> list[dict]:
    return [e for e in invoice_posts(db) if "/count" in e["path"]]


def ids_here(partner) -> list[int]:
    return sorted(Invoice.objects.filter(partner=partner).values_list("autotask_id", flat=True))


@pytest.fixture
def pages_read(monkeypatch):
    """The ids of every Invoices page the client read, per page."""
    pages: list[list[int]] = []
    lock = threading.Lock()
    original = AutotaskClient.iter_pages

    def iter_pages(self, entity, query=None, **kwargs):
        for page in original(self, entity, query, **kwargs):
            if entity == "Invoices":
                with lock:
                    pages.append([item["id"] for item in page.items])
            yield page

    monkeypatch.setattr(AutotaskClient, "iter_pages", iter_pages)
    return pages


@pytest.fixture
def server(autotask_sandbox, make_sandbox):
    """After `autotask_sandbox` (which `connect` uses), so the zone lookup points here. A
    little latency, so the readers really overlap."""
    return make_sandbox(companies=50, invoices=INVOICES, latency_ms=30)


def sparse_top(db) -> None:
    """Gaps: void every other invoice in the upper half of the ids (voided ones are not
    synced), so the probe's density overestimates the top: ids run beyond the estimate."""
    ids = sorted(i["id"] for i in db.invoices())
    for at in ids[len(ids) // 2 :: 2]:
        db.void_invoice(at)


def test_plan_ranges_bounded_ranges_the_last_open_ended():
    # 5,000 rows, 3 readers: 4 rounds each; a bounded range takes 4 pages less 6 % (1,880).
    ranges = plan_ranges(after=1_000, first_id=1, seen=1_000, remaining=5_000)
    assert ranges == [[1_000, 2_880, False], [2_880, 4_760, False], [4_760, None, False]]
    # Twice as many ids per row: twice the id span per range.
    assert plan_ranges(after=2_000, first_id=1, seen=1_000, remaining=5_000)[0][1] == 2_000 + 3_760
    # Not worth splitting: one open-ended range.
    assert plan_ranges(after=10, first_id=1, seen=10, remaining=2_500) == [[10, None, False]]


def test_plan_ranges_for_the_fewest_rounds_on_the_busiest_reader():
    """20,000 invoices after a one-page probe: 19,500 rows left. Ranges of whole pages less
    the margin (13, 13, 15 requests: the shortfall went to the open range) took a round more
    than these (14, 14, 13)."""
    ranges = plan_ranges(after=500, first_id=1, seen=500, remaining=19_500)
    assert ranges == [[500, 7_080, False], [7_080, 13_660, False], [13_660, None, False]]
    bounded = [high - low for low, high, _ in ranges[:-1]]
    requests = [-(-rows // 500) for rows in [*bounded, 19_500 - sum(bounded)]]
    assert requests == [14, 14, 13]
    # A bounded range denser than the probe by the sandbox's ~3 % still fits its 14 rounds.
    assert all(-(-int(rows * 1.03) // 500) <= 14 for rows in bounded)
    # Two readers' worth of rows: the open range takes the rest, no empty range.
    assert plan_ranges(after=500, first_id=1, seen=500, remaining=1_500, min_pages=2) == [
        [500, 1_440, False],
        [1_440, None, False],
    ]


def test_every_invoice_once_across_ranges_with_gaps_and_ids_beyond_the_estimate(
    partner_a, server, connect, run_now, pages_read
):
    db = server.db
    sparse_top(db)
    run = connect(partner_a, server=server).first_run
    db.reset_log()
    db.reset_in_flight_peak()
    done = run_now(run)

    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    expected = settled_ids(db)
    assert ids_here(partner_a) == expected  # each once (sorted lists equal, no duplicates)
    ranges = done.cursor["invoices_ranges"]
    assert len(ranges) == 3 and all(r[2] for r in ranges) and ranges[-1][1] is None
    assert ranges[-2][1] < expected[-1]  # ids beyond the estimated span: the open range took them
    assert sum(1 for i in expected if i > ranges[-2][1]) > 500
    read = [i for page in pages_read for i in page]
    assert sorted(read) == expected  # no invoice read twice
    # Requests: one query would read ceil(n / 500) pages; ranges cost ≤ 2 more, count included.
    minimum = -(-len(expected) // 500)
    assert len(count_requests(db)) == 1
    assert len(invoice_posts(db)) <= minimum + 2, (len(invoice_posts(db)), minimum)
    # Parallel, and within Autotask's limit, as the sandbox counted them.
    assert db.in_flight_peak["invoices"] == 3
    assert max(db.in_flight_peak.values()) <= 3
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exists()


def test_a_run_stopped_mid_range_resumes_every_range_after_its_committed_pages(
    partner_a, server, connect, run_now, pages_read, monkeypatch
):
    db = server.db
    run = connect(partner_a, server=server).first_run
    original = SyncEngine._apply_invoices
    written = {"pages": 0}

    def apply(engine, records, **prepared):
        written["pages"] += 1
        if written["pages"] == 6 and engine.cursor.get("invoices_ranges"):
            raise AutotaskTransientError("Autotask went away", kind="transient")
        return original(engine, records, **prepared)

    monkeypatch.setattr(SyncEngine, "_apply_invoices", apply)
    with pytest.raises(RetryLater):
        run_now(run)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.QUEUED
    ranges = run.cursor["invoices_ranges"]
    assert not all(r[2] for r in ranges)
    committed = set(ids_here(partner_a))
    assert len(committed) == 5 * 500  # 2 probe pages and 3 range pages; the 6th rolled back
    # Each range's cursor: every committed id of the range is at or below it.
    for low, high, _ in ranges:
        mine = [i for i in committed if i > low and (high is None or i <= high)]
        assert not mine, (low, mine[:3])  # `after` moved past every committed id
    assert sum(len(p) for p in pages_read) >= len(committed)

    monkeypatch.setattr(SyncEngine, "_apply_invoices", original)
    pages_read.clear()
    db.reset_log()
    done = run_now(run)
    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    assert ids_here(partner_a) == settled_ids(db)
    again = [i for page in pages_read for i in page]
    assert not committed & set(again)  # no committed invoice read again
    assert sorted(again) == sorted(set(settled_ids(db)) - committed)
    assert not count_requests(db)  # the resumed run keeps the planned ranges
    assert done.cursor["invoices_ranges"] == [
        [r[0], r[1], True] for r in done.cursor["invoices_ranges"]
    ]
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exists()


def test_a_small_sync_reads_one_query_and_the_count_asked_ahead(
    partner_a, autotask_sandbox, make_sandbox, connect, run_now
):
    """A phase of two pages is read as one query; its count, asked next to the first page
    (sync/engine.py: the split starts a round earlier), is its one extra request."""
    server = make_sandbox(companies=20, invoices=900)
    run = connect(partner_a, server=server).first_run
    server.db.reset_log()
    done = run_now(run)
    assert done.status == SyncRun.Status.SUCCEEDED
    expected = settled_ids(server.db)
    assert ids_here(partner_a) == expected
    assert len(page_requests(server.db, "Invoices")) == -(-len(expected) // 500) == 2
    assert len(count_requests(server.db)) == 1
    assert len(page_requests(server.db, "Companies")) == 1  # and the companies' count
    assert len(server.db.requests(entity="Companies")) == 2
    assert "invoices_ranges" not in done.cursor
    assert "companies_ranges" not in done.cursor


def test_results_out_of_id_order_read_as_one_query_whose_cursor_never_moves(
    partner_a, server, connect, run_now, pages_read
):
    db = server.db
    db.set_switches(result_order="scrambled")
    run = connect(partner_a, server=server).first_run
    db.reset_log()
    done = run_now(run)

    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    expected = settled_ids(db)
    assert ids_here(partner_a) == expected
    assert pages_read[0] != sorted(pages_read[0])  # the sandbox really scrambled them
    assert done.cursor["invoices_unordered"] is True
    assert "invoices_ranges" not in done.cursor  # not split: the probe saw no id order
    assert done.cursor.get("invoices_after_id", 0) == 0  # a resumed run reads it all again
    assert len(count_requests(db)) == 1  # asked ahead, not used
    assert len(page_requests(db, "Invoices")) == -(-len(expected) // 500)
