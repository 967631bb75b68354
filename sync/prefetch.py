"""Read-ahead for the sync engine (sync/engine.py): the next Autotask page is read on a helper
thread while the current one is written (`Prefetched`), and reads whose keys are known in
advance (id batches) go out up to 3 at a time, within Autotask's per-endpoint limit
(`ParallelReads`)."""

from __future__ import annotations

import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor


class Prefetched:
    """Iterate `pages` (an iterator that does HTTP, e.g. `client.iter_pages`) reading ahead in
    a helper thread while the caller works on the current item. Use as a context manager, so
    that stopping early (an exception, LeaseLost) always ends the helper:

        with Prefetched(client.iter_pages(...), depth=READ_AHEAD) as pages:
            for page in pages:
                ...  # commit the page

    At most `depth` items are read (or being read) beyond the ones the caller has taken: with
    depth 1 the next read starts when the caller takes an item; with depth 2 a write that takes
    longer than a read (a GC pause, a slow commit) does not stall the reader. One reader, so
    one request in flight, and the requests are the same, in the same order, as without
    prefetching. The helper thread only reads: the caller keeps the database, so pages commit
    in order on its thread. An exception from a read is raised to the caller, unchanged, when
    it asks for that item — after every earlier item was handled, as without prefetching. On
    exit no further read starts; a read in flight is waited for (bounded by the client's
    timeouts and retries), then `pages` is closed.

    While any Prefetched is open, the interpreter's thread switch interval is 0.5 ms instead of
    5 ms. The reader is I/O-bound (Redis limiter round trips, the HTTP exchange read in 10 KB
    chunks) and the caller is CPU-bound (parsing, building upsert rows): at 5 ms the reader
    waits up to 5 ms for the GIL after every socket call, which measured ~40 ms lost before
    each request and ~10 ms inside it (bench/sync_initial.py: wall 6.5 s -> 5.6 s at 100 ms
    latency, same 45 requests). Process-wide, counted, restored when the last one closes.
    """

    _END = object()
    SWITCH_INTERVAL = 0.0005
    _open = 0
    _saved_interval: float | None = None
    _lock = threading.Lock()

    def __init__(self, pages: Iterator, *, depth: int = 1, name: str = "autotask-prefetch"):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._pages = pages
        self._name = name
        self._permits = threading.Semaphore(depth)  # reads allowed beyond what was taken
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._entered = False

    def __enter__(self) -> Prefetched:
        _fast_switch_enter()
        self._entered = True
        return self

    def _read(self) -> None:
        while True:
            self._permits.acquire()
            if self._stop.is_set():
                return
            try:
                item = next(self._pages, self._END)
            except BaseException as exc:  # handed to the caller, unchanged, in order
                self._items.put((False, exc))
                return
            self._items.put((True, item))
            if item is self._END:
                return

    def __iter__(self) -> Iterator:
        self._thread = threading.Thread(target=self._read, name=self._name, daemon=True)
        self._thread.start()
        while True:
            ok, item = self._items.get()
            if not ok:
                raise item
            if item is self._END:
                return
            self._permits.release()  # taken: the reader may read one more
            yield item

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._permits.release()  # wakes a reader waiting for a permit
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        close = getattr(self._pages, "close", None)
        if close is not None:
            close()  # the reader is done: closing the generator here is safe
        if self._entered:
            self._entered = False
            _fast_switch_exit()


def _fast_switch_enter() -> None:
    """The 0.5 ms switch interval while any reader is open (see Prefetched): counted, since
    syncs on a thread pool open and close readers concurrently."""
    cls = Prefetched
    with cls._lock:
        if cls._open == 0:
            cls._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(cls.SWITCH_INTERVAL, cls._saved_interval))
        cls._open += 1


def _fast_switch_exit() -> None:
    cls = Prefetched
    with cls._lock:
        cls._open -= 1
        if cls._open == 0 and cls._saved_interval is not None:
            sys.setswitchinterval(cls._saved_interval)


class ParallelReads:
    """`read(key)` for every key, up to `workers` at a time on helper threads, yielded as
    (key, result) in the order of `keys`: the caller applies them in the same order as one
    reader would (deterministic counts, cursor and change log), on its own thread (the
    database stays on the caller's thread; `read` must not touch it).

        with ParallelReads(read_batch, batches, workers=3) as reads:
            for batch, items in reads:
                ...  # apply and commit, in order

    At most `workers` reads are in flight or done-but-not-taken, so memory stays bounded and
    a run stopped early wastes at most `workers` reads. The Autotask limiter still takes a
    slot per request (≤ 3 per endpoint per database across every worker): `workers` is this
    run's share, not a way around it. An exception from a read is raised to the caller when it
    reaches that key, after every earlier key was handled; on exit reads not started are
    cancelled and those in flight waited for."""

    def __init__(
        self,
        read: Callable,
        keys: Iterable,
        *,
        workers: int = 3,
        name: str = "autotask-reread",
    ):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._read = read
        self._keys = list(keys)
        self._workers = workers
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[object, Future]] = deque()

    def __enter__(self) -> ParallelReads:
        _fast_switch_enter()
        self._executor = ThreadPoolExecutor(
            max_workers=min(self._workers, max(1, len(self._keys))),
            thread_name_prefix=self._name,
        )
        return self

    def __iter__(self) -> Iterator[tuple[object, object]]:
        assert self._executor is not None, "use ParallelReads as a context manager"
        keys = iter(self._keys)

        def fill() -> None:
            while len(self._pending) < self._workers:
                key = next(keys, _NO_KEY)
                if key is _NO_KEY:
                    return
                self._pending.append((key, self._executor.submit(self._read, key)))

        fill()
        while self._pending:
            key, future = self._pending.popleft()
            result = future.result()  # raises the read's exception, in order
            fill()  # taken: one more may start while the caller applies this one
            yield key, result

    def __exit__(self, *exc_info) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            _fast_switch_exit()


_NO_KEY = object()
