"""Bench: read every invoice from an in-process sandbox with the Autotask client.

    .venv/bin/python bench/client_read.py [--invoices 20000] [--latency-ms 100] [--redis]

Prints the requests the client used (its own count and the sandbox's log), the minimum
possible (ceil(invoices / 500) pages + 1 zone lookup), the wall time, and the lower bound
pages x latency. ``--redis`` runs through the RedisLimiter (REDIS_URL), which adds one
ThresholdInformation request for the budget.

There is no parallel reader: Autotask pages are keyset-by-id and there is no descending sort,
so splitting by id ranges needs the maximum id first (a bisection of count queries, ~25 extra
requests on real ids) — more of the shared hourly budget than the wall time it saves is worth.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--companies", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--redis", action="store_true", help="use RedisLimiter on REDIS_URL")
    args = parser.parse_args()

    from integrations.autotask import AutotaskClient, NoopLimiter, RedisLimiter
    from integrations.autotask.zones import ZoneCache
    from sandbox.server import SandboxServer
    from sandbox.state import SandboxDatabase

    print(f"building sandbox: {args.invoices} invoices, latency {args.latency_ms} ms ...")
    db = SandboxDatabase(
        invoices=args.invoices,
        companies=args.companies,
        latency_ms=args.latency_ms,
        integration_code="PAYSYNC-BENCH",
    )
    if args.redis:
        import redis

        url = os.environ.get("REDIS_URL")
        if not url:
            parser.error("--redis needs REDIS_URL")
        limiter = RedisLimiter(redis.Redis.from_url(url), key_prefix="bench-autotask:")
    else:
        limiter = NoopLimiter()

    with SandboxServer([db]) as server:
        client = AutotaskClient(
            db.username,
            db.secret,
            integration_code=db.integration_code,
            zone_lookup_url=server.zone_lookup_url,
            limiter=limiter,
            zone_cache=ZoneCache(),
            timeout=30,
            connect_timeout=5,
        )
        started = time.perf_counter()
        seen = 0
        pages = 0
        for page in client.iter_invoice_pages():
            pages += 1
            seen += len(page)
        wall = time.perf_counter() - started
        logged = len(db.request_log)

    expected_pages = max(1, math.ceil(args.invoices / 500))
    minimum = expected_pages + 1
    bound = expected_pages * args.latency_ms / 1000
    print(f"invoices read:      {seen} in {pages} pages")
    used = client.stats.count
    print(f"requests used:      {used} (sandbox log: {logged}), {dict(client.stats.by_entity)}")
    print(f"minimum possible:   {minimum} (ceil({args.invoices}/500) pages + zone lookup)")
    print(f"wall time:          {wall:.2f} s")
    print(f"lower bound:        {bound:.2f} s ({expected_pages} pages x {args.latency_ms} ms)")
    print(f"overhead per page:  {(wall - bound) / max(pages, 1) * 1000:.1f} ms")
    ok = seen == args.invoices
    if not ok:
        print("ERROR: not every invoice was read", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
