"""The sync reads the next Autotask page while it writes the current one (sync.prefetch.Prefetched).

What must not move with it (SY-3, CQ-4): pages commit in order, each with its cursor, on the
run's thread only; a read error reaches the run after the pages before it are committed, as
the same exception (same run outcome); when the run stops (LeaseLost, an error) no further
page is read and the reading thread is gone before the run returns.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest

from integrations.autotask.client import AutotaskClient
from integrations.autotask.errors import AutotaskResponseError, AutotaskTransientError
from invoices.models import Invoice
from sync.engine import READ_AHEAD, SyncEngine
from sync.models import ChangeLogEntry, SyncRun
from sync.prefetch import Prefetched
from sync.services.leases import RetryLater

from .test_concurrency import page_requests, settled_invoices

WAIT = 30


# --- Prefetched on its own ------------------------------------------------------------------


class Source:
    """An iterator of numbered pages that logs when each read starts and ends, and where."""

    def __init__(self, n: int, *, fail_at: int | None = None, delay: float = 0.0):
        self.n, self.fail_at, self.delay = n, fail_at, delay
        self.events: list[tuple[str, int]] = []
        self.threads: set[str] = set()
        self.closed = False
        self._gen = self._pages()

    def _pages(self):
        try:
            for i in range(1, self.n + 1):
                self.events.append(("read", i))
                self.threads.add(threading.current_thread().name)
                time.sleep(self.delay)
                if i == self.fail_at:
                    raise AutotaskResponseError(f"page {i} is broken", entity="Invoices")
                self.events.append(("got", i))
                yield i
        finally:
            self.closed = True

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self):
        self._gen.close()


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("autotask-prefetch")]


def test_items_come_in_order_read_on_another_thread_one_ahead():
    source = Source(5, delay=0.01)
    seen = []
    with Prefetched(source) as pages:
        for page in pages:
            # While page k is handled, at most page k+1 has been asked for.
            assert max(i for what, i in source.events if what == "read") <= page + 1
            time.sleep(0.03)  # "writing": long enough for the next read to be done
            seen.append(page)
            source.events.append(("handled", page))
    assert seen == [1, 2, 3, 4, 5]
    assert threading.current_thread().name not in source.threads
    # The next read overlaps the handling of the current page.
    assert source.events.index(("got", 2)) < source.events.index(("handled", 1))
    assert source.closed
    assert not prefetch_threads()


def test_with_depth_2_the_reader_runs_two_ahead_and_never_more():
    source = Source(6, delay=0.005)
    with Prefetched(source, depth=2) as pages:
        for page in pages:
            # A slow write: the reader goes on with the next two reads, and stops there.
            if page <= 4:
                deadline = time.monotonic() + 10
                while ("got", page + 2) not in source.events and time.monotonic() < deadline:
                    time.sleep(0.005)
                assert ("got", page + 2) in source.events
            time.sleep(0.02)
            reads = [i for what, i in source.events if what == "read"]
            assert max(reads) <= page + 2
    assert [i for what, i in source.events if what == "read"] == [1, 2, 3, 4, 5, 6]
    assert source.closed
    assert not prefetch_threads()


def test_a_read_error_comes_after_the_earlier_pages_unchanged():
    source = Source(5, fail_at=3)
    handled = []
    with (
        pytest.raises(AutotaskResponseError, match="page 3 is broken"),
        Prefetched(source) as pages,
    ):
        for page in pages:
            handled.append(page)
    assert handled == [1, 2]
    assert ("read", 4) not in source.events
    assert not prefetch_threads()


def test_stopping_early_waits_for_the_read_in_flight_and_reads_no_more():
    source = Source(10, delay=0.05)
    with pytest.raises(RuntimeError, match="lease lost"), Prefetched(source) as pages:
        for page in pages:
            if page == 2:
                time.sleep(0.02)  # page 3's read (50 ms) is in flight now
                raise RuntimeError("lease lost")
    reads = [i for what, i in source.events if what == "read"]
    assert reads == [1, 2, 3]  # nothing after the read in flight
    assert ("got", 3) in source.events  # which ended before the `with` did
    assert source.closed
    assert not prefetch_threads()


def test_an_empty_source_makes_no_thread_linger():
    with Prefetched(iter(())) as pages:
        assert list(pages) == []
    assert not prefetch_threads()


def test_the_switch_interval_is_short_while_reading_ahead_and_restored_after():
    before = sys.getswitchinterval()
    assert before > Prefetched.SWITCH_INTERVAL
    with Prefetched(iter([1, 2])) as outer:
        assert sys.getswitchinterval() == Prefetched.SWITCH_INTERVAL
        with pytest.raises(RuntimeError), Prefetched(iter([3])) as inner:
            list(inner)
            raise RuntimeError("a page failed")
        # The inner one closing (by an exception) leaves the outer one's setting alone.
        assert sys.getswitchinterval() == Prefetched.SWITCH_INTERVAL
        assert list(outer) == [1, 2]
    assert sys.getswitchinterval() == before


# --- in the engine, against the sandbox ------------------------------------------------------


@pytest.fixture
def invoice_reads(monkeypatch):
    """Wraps the client's page reads: records which thread read each Invoices page and can
    raise `fail_with` instead of returning page `fail_at` (in the reading thread)."""

    class Reads:
        fail_at: int | None = None
        fail_with: Exception | None = None
        pages = 0
        threads: set[str] = set()

    reads = Reads()
    original = AutotaskClient.iter_pages

    def iter_pages(self, entity, query=None, **kwargs):
        for page in original(self, entity, query, **kwargs):
            if entity == "Invoices":
                reads.pages += 1
                reads.threads.add(threading.current_thread().name)
                if reads.pages == reads.fail_at:
                    raise reads.fail_with
            yield page

    monkeypatch.setattr(AutotaskClient, "iter_pages", iter_pages)
    return reads


@pytest.fixture
def writes_on(monkeypatch):
    """The names of the threads that applied invoice pages."""
    names: set[str] = set()
    original = SyncEngine._apply_invoices

    def apply(engine, records, **prepared):
        names.add(threading.current_thread().name)
        return original(engine, records, **prepared)

    monkeypatch.setattr(SyncEngine, "_apply_invoices", apply)
    return names


@pytest.fixture
def server(autotask_sandbox, make_sandbox):
    """After `autotask_sandbox` (which `connect` uses), so the zone lookup points here."""
    return make_sandbox(companies=20, invoices=2_200)


def ids_in_order(db) -> list[int]:
    return sorted(inv["id"] for inv in settled_invoices(db))


@pytest.mark.django_db
def test_a_broken_page_fails_the_run_after_committing_the_pages_before_it(
    partner_a, server, connect, run_now, invoice_reads, writes_on
):
    invoice_reads.fail_at = 3
    invoice_reads.fail_with = AutotaskResponseError("page 3 is broken", entity="Invoices")
    first = connect(partner_a, server=server).first_run
    sent_before = len(server.db.requests())
    run = run_now(first)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_kind == "response" and run.error_message == "page 3 is broken"
    expected = ids_in_order(server.db)[:1_000]
    got = list(
        Invoice.objects.filter(partner=partner_a)
        .order_by("autotask_id")
        .values_list("autotask_id", flat=True)
    )
    assert got == expected  # pages 1 and 2, nothing of page 3
    assert run.cursor["invoices_after_id"] == expected[-1]
    assert "invoices_done" not in run.cursor
    assert writes_on == {threading.current_thread().name}
    assert threading.current_thread().name not in invoice_reads.threads
    assert not prefetch_threads()
    assert run.requests_used == len(server.db.requests()) - sent_before  # page 3's too


@pytest.mark.django_db
def test_a_transient_read_error_requeues_and_the_rerun_resumes_after_the_last_commit(
    partner_a, server, connect, run_now, invoice_reads
):
    invoice_reads.fail_at = 3
    invoice_reads.fail_with = AutotaskTransientError("Autotask is down", kind="transient")
    first = connect(partner_a, server=server).first_run
    with pytest.raises(RetryLater):
        run_now(first)
    first.refresh_from_db()
    assert first.status == SyncRun.Status.QUEUED
    assert first.cursor["invoices_after_id"] == ids_in_order(server.db)[999]
    assert Invoice.objects.filter(partner=partner_a).count() == 1_000
    assert not prefetch_threads()

    invoice_reads.fail_at = None
    server.db.reset_log()
    done = run_now(first)
    assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
    invoices = Invoice.objects.filter(partner=partner_a)
    assert sorted(invoices.values_list("autotask_id", flat=True)) == ids_in_order(server.db)
    remaining = len(ids_in_order(server.db)) - 1_000
    assert len(page_requests(server.db, "Invoices")) == -(-remaining // 500)
    assert not ChangeLogEntry.objects.filter(partner=partner_a).exists()


@pytest.mark.django_db
def test_lease_lost_at_page_2_rolls_it_back_and_reads_nothing_after_the_page_in_flight(
    partner_a, server, connect, run_now, invoice_reads, monkeypatch
):
    run = connect(partner_a, server=server).first_run
    original = SyncEngine._commit_page

    def commit(engine, phase):
        if phase == "invoices" and Invoice.objects.filter(partner=partner_a).count() > 500:
            SyncRun.objects.filter(id=engine.run.id).update(owner=uuid.uuid4())  # the reaper
        return original(engine, phase)

    monkeypatch.setattr(SyncEngine, "_commit_page", commit)
    after = run_now(run)

    assert after.status == SyncRun.Status.RUNNING  # left to the reaper
    assert Invoice.objects.filter(partner=partner_a).count() == 500  # page 2 rolled back
    assert after.cursor["invoices_after_id"] == ids_in_order(server.db)[499]
    # Pages 1, 2 and the READ_AHEAD read (or being read) beyond page 2; none after.
    assert invoice_reads.pages <= 2 + READ_AHEAD
    assert len(page_requests(server.db, "Invoices")) == invoice_reads.pages
    assert not prefetch_threads()
