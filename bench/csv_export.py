"""Bench: the streamed CSV export of the invoices list (issue 17, item 8).

    .venv/bin/python bench/csv_export.py [--invoices 100000] [--customers 2000] [--other 10000]

Creates `--invoices` invoices for one partner (and as many for a second partner, whose rows must
never appear) in a fresh PostgreSQL database (a throwaway server unless DATABASE_URL is set:
bench/sync_common.py), then downloads `/invoices/export.csv?archived=all` through Django's test
client as that partner's user, reading the stream to the end. Prints the seconds, the rows and
bytes, and the RSS growth of this process during the download (sampled every 5 ms from
/proc/self/statm), for a one-month export of the same partner too (1/12 of the rows), so a flat
memory shows as the same growth for 12x the rows.

Target (issue 17): < 10 s for 100,000 invoices, memory flat (growth not proportional to rows).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """The highest RSS seen while the block runs, sampled in a thread."""

    def __enter__(self):
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def fill(partner, invoices: int, customers: int, prefix: str) -> None:
    from customers.models import Customer
    from invoices.models import Invoice

    made = Customer.objects.bulk_create(
        Customer(
            partner=partner,
            source="local",
            name=f"{prefix} Customer {i}",
            number=f"{prefix}-C{i}",
            currency="USD" if i % 5 else "EUR",
        )
        for i in range(customers)
    )
    batch = []
    for i in range(invoices):
        customer = made[i % customers]
        batch.append(
            Invoice(
                partner=partner,
                customer=customer,
                source="local",
                number=f"{prefix}-INV-{i:06d}",
                invoice_date=f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
                due_date=f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
                currency=customer.currency,
                total=f"{100 + i % 900}.{i % 100:02d}",
                tax="0.00",
                paid_here="0.00" if i % 3 else "50.00",
            )
        )
        if len(batch) == 5000:
            Invoice.objects.bulk_create(batch)
            batch = []
    if batch:
        Invoice.objects.bulk_create(batch)


def download(client, path: str) -> tuple[float, int, int, float, bytes]:
    with PeakRss() as mem:
        t0 = time.perf_counter()
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        assert response.streaming, "the export must stream"
        size = lines = 0
        first = b""
        for chunk in response.streaming_content:
            if not first:
                first = chunk
            size += len(chunk)
            lines += chunk.count(b"\n")
        seconds = time.perf_counter() - t0
    return seconds, lines - 1, size, mem.growth_mb, first


def measure() -> None:
    """In a fresh process (its heap not grown by the fill): the exports and their RSS."""
    common.setup_django()
    from django.conf import settings
    from django.test import Client

    from invoices.selectors import invoice_list
    from partners.models import User

    settings.ALLOWED_HOSTS = ["*"]
    settings.DEBUG = False  # no query log growing with the rows
    user = User.objects.get(username="bench-owner")
    client = Client()
    client.force_login(user)
    expected = invoice_list(partner=user.partner, archived="all").count()

    # Warm-up (templates, first connection), then a one-month and the full export.
    download(client, "/invoices/export.csv?archived=all&q=MINE-INV-00000")
    small = download(client, "/invoices/export.csv?archived=all&from=2025-01-01&to=2025-01-31")
    full = download(client, "/invoices/export.csv?archived=all")
    seconds, rows, _size, growth, _first = full
    assert rows == expected, (rows, expected)

    # No row of the other partner in this partner's export.
    response = client.get("/invoices/export.csv?archived=all&q=OTHER")
    leaked = sum(1 for _ in b"".join(response.streaming_content).splitlines()) - 1

    # For contrast, last: the same rows held in a list (what a non-streamed export would hold).
    with PeakRss() as held:
        kept = list(invoice_list(partner=user.partner, archived="all").values_list())
    del kept

    print(f"\n{'export':28} {'rows':>8} {'MB':>7} {'seconds':>8} {'rows/s':>9} {'RSS +MB':>8}")
    for name, (s, n, b, g, _f) in (("one month (date range)", small), ("full", full)):
        print(f"{name:28} {n:8,d} {b / 2**20:7.1f} {s:8.2f} {n / s:9,.0f} {g:8.1f}")
    print(
        f"\nfull export: {seconds:.2f} s for {rows:,} rows (target < 10 s); peak RSS growth "
        f"{growth:.1f} MB (the same rows held in a list instead: +{held.growth_mb:.1f} MB); "
        f"other partner's rows in it: {leaked}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--other", type=int, default=10_000, help="the other partner's invoices")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure()
        return
    common.start_services()
    common.migrate()
    common.setup_django()
    from partners.models import Partner, User

    mine = Partner.objects.create(name="Bench Export MSP")
    other = Partner.objects.create(name="Other MSP")
    t0 = time.perf_counter()
    fill(mine, args.invoices, args.customers, "MINE")
    fill(other, args.other, 100, "OTHER")
    print(
        f"==> {args.invoices:,} invoices (+{args.other:,} of another partner) in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    User.objects.create_user("bench-owner", password="bench-pw-1", partner=mine, role="owner")
    # DATABASE_URL / REDIS_URL (set by start_services) reach the child through os.environ.
    subprocess.run([sys.executable, __file__, "--measure"], check=True, env=os.environ)


if __name__ == "__main__":
    main()
