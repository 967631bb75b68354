"""Parallel paged reads of one phase of the initial sync, split by id ranges (issue 19).

`PhaseReads` reads a phase's query on helper threads and hands the caller (the engine's
writer, which owns the database) events in arrival order; the caller commits each page with
the cursor of the range it came from. How the phase is read (the decision is documented in
sync/engine.py's docstring):

1. Resumed with ranges in the cursor: one reader per range not done, from its `after`.
2. Otherwise a probe: the query `id gt after` read page by page, PROBE_PAGES pages at most
   (`probe_pages`). If it ends there, that was the whole phase. If the probe's pages are not
   in ascending id order, the phase goes on as that one query to its end (`ordered=False` on
   every page: the caller then does not move its resume cursor).
3. Else one `query/count`: of the rows after the probe, or (`count_ahead`) of the phase's rows,
   asked at the probe's start on its own thread (a round earlier; one request more when the
   phase ends within the probe). Then `plan_ranges`: fewer than `min_pages` (SPLIT_MIN_PAGES)
   pages left → the probe's query goes on alone; else RANGE_READERS ranges over the ids after
   the probe, the last one open-ended (`id gt x`), so an estimate that is off changes only the
   balance, never what is read.

Each page is handed over with `prepare(items)` running on one preparer thread (in arrival
order; the caller takes the result with the event), so a reader sends its next request as soon
as it has a page.

Every request goes through the client, so through the limiter's slots: ≤ 3 in flight per
endpoint per database whoever else reads it. At most `depth` (READ_AHEAD) pages are read (or
being read) beyond those the caller took while the phase is one query, `split_depth`
(RANGE_DEPTH) once split, so memory stays bounded whatever the phase's size. The readers
never touch the database. An exception from a reader is handed to the caller as an event; on
`close()` no further read starts and reads in flight are waited for (bounded by the client's
timeouts and retries).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from integrations.autotask.client import AutotaskClient
from integrations.autotask.query import Q, Query

from .prefetch import _fast_switch_enter, _fast_switch_exit
from .tuning import (
    PROBE_PAGES,
    RANGE_DEPTH,
    RANGE_MARGIN,
    RANGE_READERS,
    READ_AHEAD,
    SPLIT_MIN_PAGES,
)


def plan_ranges(
    *,
    after: int,
    first_id: int,
    seen: int,
    remaining: int,
    readers: int = RANGE_READERS,
    page_size: int = 500,
    min_pages: int = SPLIT_MIN_PAGES,
    margin: float = RANGE_MARGIN,
) -> list[list]:
    """Ranges `[after, until, done]` (ids in (after, until]; until None = no upper bound) for
    the `remaining` rows with an id above `after`, from the probe's density: `seen` rows with
    ids from `first_id` to `after`. One range when it is not worth splitting.

    Planned for the fewest rounds (requests one after the other on the busiest reader, which
    is what the phase's wall time is): a bounded range counts on a page less the `margin`
    share per request (the density is an estimate, and one row over costs a request), so
    with `rounds` requests each, `readers` ranges hold `readers x rounds x page x (1 -
    margin)` rows: `rounds` is the least that holds `remaining`. The bounded ranges take
    that many rows each, in order, until what is left fits the last, open-ended range
    (`id gt x`), which also takes every row beyond the estimate: a wrong estimate costs
    balance, never what is read. (Sized to whole pages less the margin instead, the bounded
    ranges' shortfall went to the open range: a round more for 20,000 invoices.)"""
    pages = -(-remaining // page_size)
    if readers < 2 or pages < max(min_pages, 2) or seen <= 0:
        return [[after, None, False]]
    ids_per_row = max(1.0, (after - first_id + 1) / seen)
    per_request = page_size * (1 - margin)
    rounds = math.ceil(remaining / (readers * per_request))
    bounded = max(1, round(rounds * per_request))
    ranges, low, left = [], after, remaining
    for _ in range(readers - 1):
        if left <= bounded:
            break  # the rest fits the open range's rounds
        high = low + max(1, round(bounded * ids_per_row))
        ranges.append([low, high, False])
        low, left = high, left - bounded
    ranges.append([low, None, False])
    return ranges


def ascending(ids: list[int], after: int | None) -> bool:
    """Strictly ascending and above `after`: the order `id gt last` resuming relies on."""
    previous = after
    for i in ids:
        if previous is not None and i <= previous:
            return False
        previous = i
    return True


@dataclass
class PageEvent:
    key: int | None  # the range's index; None = the phase's single query (probe and beyond)
    page: Any  # the client's Page (raw items)
    prepared: Any  # what `prepare(items)` returned, computed off the writer's thread
    ids: list[int]
    ordered: bool  # ascending and above what this reader read before
    last: bool  # the range (or, key None, the phase) ends with this page


@dataclass
class SplitEvent:
    ranges: list[list] = field(default_factory=list)


class PhaseReads:
    """One phase's readers (see the module docstring). Use as a context manager:

        with PhaseReads(client, "Invoices", conditions, after=0, prepare=parse) as reads:
            reads.start()
            for event in reads:  # PageEvent / SplitEvent, in arrival order
                ...
                if <the phase is done>: break

    The iterator never ends by itself: the caller knows from the events when every range
    (or the single query) has ended."""

    def __init__(
        self,
        client: AutotaskClient,
        entity: str,
        conditions: list,
        *,
        after: int = 0,
        ranges: list[list] | None = None,
        prepare: Callable[[list], Any] = lambda items: None,
        split: bool = True,
        readers: int = RANGE_READERS,
        depth: int = READ_AHEAD,
        split_depth: int = RANGE_DEPTH,
        page_size: int = 500,
        probe_pages: int = PROBE_PAGES,
        min_pages: int = SPLIT_MIN_PAGES,
        count_ahead: bool = False,
        name: str = "autotask-prefetch",
    ):
        self.client = client
        self.entity = entity
        self.conditions = list(conditions)
        self.after = after
        self.ranges = ranges
        self.prepare = prepare
        self.split = split
        self.readers = readers
        self.page_size = page_size
        self.probe_pages = probe_pages
        self.min_pages = min_pages
        self.count_ahead = count_ahead
        self.name = name
        self._permits = threading.Semaphore(split_depth if ranges else depth)
        self._more_permits = max(0, split_depth - depth)  # given when the probe splits
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._entered = False
        # `prepare` runs here, one page after the other in arrival order, so a reader sends its
        # next request as soon as it has a page, not after preparing it: Autotask pages chain
        # (nextPageUrl), and the preparing was a tenth of each reader's round (issue 19).
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-prepare")

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> PhaseReads:
        _fast_switch_enter()
        self._entered = True
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        if self.ranges:
            for index, (low, high, done) in enumerate(self.ranges):
                if not done:
                    self._spawn(self._read_range, index, low, high)
        else:
            self._spawn(self._probe)

    def _spawn(self, target, *args) -> bool:
        thread = threading.Thread(
            target=target, args=args, name=f"{self.name}-{len(self._threads)}", daemon=True
        )
        with self._lock:
            if self._stop.is_set():
                return False
            self._threads.append(thread)
        thread.start()
        return True

    def close(self) -> None:
        self._stop.set()
        while True:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
            if not threads:
                break
            for thread in threads:
                self._permits.release()  # wakes a reader waiting for a permit: it stops
                thread.join(timeout=0.2)
        self._preparer.shutdown(wait=True, cancel_futures=True)
        if self._entered:
            self._entered = False
            _fast_switch_exit()

    def __iter__(self) -> Iterator[PageEvent | SplitEvent]:
        while True:
            ok, event = self._events.get()
            if not ok:
                raise event
            if isinstance(event, PageEvent):
                self._permits.release()  # taken: one more read may start
                if isinstance(event.prepared, Future):
                    event.prepared = event.prepared.result()  # raises what `prepare` raised
            yield event

    # --- readers ------------------------------------------------------------------------------

    def _query(self, low: int, high: int | None) -> Query:
        filters = [*self.conditions, Q.gt("id", low)]
        if high is not None:
            filters.append(Q.lte("id", high))
        return Query(filters=filters, max_records=self.page_size)

    def _next(self, pages: Iterator, key: int | None, previous: int | None):
        """Read one page (after a permit) and hand it over; None when stopped."""
        self._permits.acquire()
        if self._stop.is_set():
            return None
        page = next(pages)
        ids = [item.get("id") for item in page.items]
        event = PageEvent(
            key=key,
            page=page,
            prepared=self._preparer.submit(self.prepare, page.items),
            ids=ids,
            ordered=ascending(ids, previous),
            last=page.next_page_url is None,
        )
        self._events.put((True, event))
        return event

    def _drain(self, pages: Iterator, key: int | None, previous: int | None) -> None:
        """Read `pages` to their end."""
        while True:
            event = self._next(pages, key, previous)
            if event is None or event.last:
                return
            if event.ids:
                previous = max(event.ids) if previous is None else max(previous, *event.ids)

    def _read_range(self, index: int, low: int, high: int | None) -> None:
        pages = self.client.iter_pages(self.entity, self._query(low, high), parse=False)
        try:
            self._drain(pages, index, low)
        except BaseException as exc:  # handed to the caller, in arrival order
            self._events.put((False, exc))
        finally:
            pages.close()

    def _count_ahead(self) -> Callable[[], int]:
        """The count of the phase's rows, asked now on its own thread (next to the probe's
        first page); the returned function waits for it (and raises what it raised)."""
        box: dict = {}
        done = threading.Event()

        def count() -> None:
            try:
                box["n"] = self.client.count(
                    self.entity, [*self.conditions, Q.gt("id", self.after)]
                )
            except BaseException as exc:  # handed to the probe
                box["error"] = exc
            finally:
                done.set()

        if not self._spawn(count):  # closing: the probe stops before it asks
            box["error"] = RuntimeError("phase reads closed")
            done.set()

        def result() -> int:
            done.wait()
            if "error" in box:
                raise box["error"]
            return box["n"]

        return result

    def _probe(self) -> None:
        counted = self._count_ahead() if self.count_ahead and self.split else None
        pages = self.client.iter_pages(self.entity, self._query(self.after, None), parse=False)
        try:
            first_id, last_id, seen, ordered = None, self.after, 0, True
            for _ in range(self.probe_pages):
                event = self._next(pages, None, last_id)
                if event is None or event.last:
                    return
                ordered &= event.ordered
                if event.ids:
                    first_id = event.ids[0] if first_id is None else first_id
                    last_id = max(last_id, *event.ids)
                    seen += len(event.ids)
            if not (self.split and ordered and first_id is not None):
                self._drain(pages, None, last_id)  # the one query, to its end
                return
            if counted is not None:  # every row after `after`, the probe's among them
                remaining = max(0, counted() - seen)
            else:
                remaining = self.client.count(self.entity, [*self.conditions, Q.gt("id", last_id)])
            ranges = plan_ranges(
                after=last_id,
                first_id=first_id,
                seen=seen,
                remaining=remaining,
                readers=self.readers,
                page_size=self.page_size,
                min_pages=self.min_pages,
            )
            if len(ranges) == 1:
                self._drain(pages, None, last_id)  # not worth splitting: same requests
                return
            pages.close()
            self._events.put((True, SplitEvent(ranges)))
            for _ in range(self._more_permits):
                self._permits.release()
            for index, (low, high, _) in enumerate(ranges[1:], start=1):
                self._spawn(self._read_range, index, low, high)
            low, high, _ = ranges[0]
            self._read_range(0, low, high)
        except BaseException as exc:
            self._events.put((False, exc))
        finally:
            pages.close()
