"""Test threads with their own database connection, joined before the test's database is
flushed (the `join_threads` fixture of the modules that use them)."""

from __future__ import annotations

import threading

from django.db import connections

WAIT = 60  # seconds: the longest a test waits for its threads to end

started: list[threading.Thread] = []


def in_thread(fn, *args):
    """Start fn(*args) in a thread with its own DB connection; returns (thread, result): the
    result dict gets "value", or "error" (the exception, handed to the test)."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the test
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    started.append(thread)
    thread.start()
    return thread, result


def join_started() -> None:
    """Join every thread `in_thread` started (each for at most WAIT seconds)."""
    while started:
        started.pop().join(WAIT)
