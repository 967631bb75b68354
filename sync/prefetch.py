"""Read-ahead for the sync engine (sync/engine.py): the next Autotask page is read on a helper
thread while the current one is written."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator


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
        cls = type(self)
        with cls._lock:
            if cls._open == 0:
                cls._saved_interval = sys.getswitchinterval()
                sys.setswitchinterval(min(cls.SWITCH_INTERVAL, cls._saved_interval))
            cls._open += 1
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
            cls = type(self)
            with cls._lock:
                cls._open -= 1
                if cls._open == 0 and cls._saved_interval is not None:
                    sys.setswitchinterval(cls._saved_interval)
