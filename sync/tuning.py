"""The sync engine's tunables (sync/engine.py, sync/rereads.py) and its cursor time format."""

from __future__ import annotations

from datetime import datetime, timedelta

SETTLE_TIME = timedelta(minutes=10)
OVERLAP = timedelta(hours=2)
IN_BATCH = 400
REREAD_CONCURRENCY = 3  # id batches in flight per run: Autotask's 3 per endpoint (API.md §4)
RECONCILE_WINDOW = timedelta(days=3)  # the daily id reconcile's reach before the cursor
RECENTLY_PAID = timedelta(days=60)  # paid invoices the daily run still re-reads
RECENT_OPEN_WINDOW = timedelta(days=30)  # Fetch New Data also re-reads unpaid invoices this young
RECENT_OPEN_MAX = 2 * IN_BATCH  # … the newest this many: ≤ 2 extra requests
PAGE_SIZE = 500
READ_AHEAD = 2  # pages read beyond the one being written (Prefetched, one query of PhaseReads)
# The initial sync's id ranges (sync/ranges.py, decision in sync/engine.py):
RANGE_READERS = 3  # Autotask allows 3 requests in flight per endpoint (API.md §4, §8.4)
RANGE_DEPTH = 4 * RANGE_READERS  # pages read beyond those written, once split
PROBE_PAGES = 1  # read before the split (the count is asked meanwhile: sync/engine.py)
SPLIT_MIN_PAGES = 6  # pages left after the probe below which the query goes on alone
# A bounded range is planned this share of its rows short of whole pages: the probe's density
# is off by a few % (sandbox: ~3 %), and one row over costs a request; the open range takes them.
RANGE_MARGIN = 0.06
PDF_BATCH = 200
PDF_OUTAGE_STREAK = 3  # PDFs in a row failing with 5xx: Autotask is down, not those PDFs


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
