"""What the Autotask sandbox itself costs: data generation and a 500-row query page.

    .venv/bin/python bench/sandbox_overhead.py [--invoices 100000] [--companies 2000]

Prints generation time for the database, then the median and p95 client-observed time per
500-invoice page (a keep-alive requests.Session POSTing /Invoices/query and following every
nextPageUrl), for a match-all filter and for a filter the sandbox must evaluate per row.
Budget: under 20 ms per page.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")

import requests

from sandbox.server import SandboxServer
from sandbox.state import SandboxDatabase


def walk(session: requests.Session, url: str, body: dict) -> list[float]:
    timings = []
    while url:
        started = time.perf_counter()
        response = session.post(url, json=body, timeout=30)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        url = response.json()["pageDetails"]["nextPageUrl"]
    return timings


def report(label: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    print(
        f"{label:<44} pages={len(timings):>4}  median={statistics.median(timings):6.2f} ms"
        f"  p95={p95:6.2f} ms  max={ordered[-1]:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--companies", type=int, default=2_000)
    args = parser.parse_args()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    db = SandboxDatabase(
        username="bench@sandbox.test",
        secret="bench-secret",
        integration_code="BENCH",
        invoices=args.invoices,
        companies=args.companies,
        threshold=10**9,
    )
    elapsed = time.perf_counter() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    counts = ", ".join(f"{len(t)} {t.entity.name}" for t in db.tables.values())
    print(f"generation: {elapsed:.2f} s, peak RSS grew by {grown:.0f} MB ({counts})")

    with SandboxServer([db]):
        session = requests.Session()
        session.headers.update(
            {"UserName": db.username, "Secret": db.secret, "ApiIntegrationCode": "BENCH"}
        )
        url = f"{db.zone_url}V1.0/Invoices/query"
        walk(session, url, {"filter": [{"op": "exist", "field": "id"}]})  # warm-up
        report(
            "POST page, match-all (exist id)",
            walk(session, url, {"filter": [{"op": "exist", "field": "id"}]}),
        )
        report(
            "POST page, isVoided eq false",
            walk(session, url, {"filter": [{"op": "eq", "field": "isVoided", "value": False}]}),
        )
        report(
            "POST page, IncludeFields (3 fields)",
            walk(
                session,
                url,
                {
                    "filter": [{"op": "gte", "field": "id", "value": 0}],
                    "IncludeFields": ["invoiceNumber", "invoiceTotal", "paidDate"],
                },
            ),
        )


if __name__ == "__main__":
    main()
