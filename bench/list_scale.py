"""Bench: PostgreSQL at fleet scale (issue 19, item 5).

    .venv/bin/python bench/list_scale.py [--partners 10000] [--invoices 2000000]
        [--big 200000] [--repeat 40] [--explain] [--page NAME] [--keep var/bench/list-pg]

Fills one database with `--partners` partners and `--invoices` invoices (the biggest partner
has `--big` of them; the rest are spread evenly), one customer per 20 invoices and one payment
per 4 paid invoices, with plain `INSERT … SELECT generate_series` (a few minutes for two
million rows; the generated `outstanding`/`status` columns are computed by PostgreSQL). Then,
signed in as the biggest partner's user, it times every dashboard and API list page (default
order, each sortable column, status filter, search, date range) through Django's test client:
p50/p95 per page over `--repeat` requests, the SQL of each page, and with `--explain` the
plan of the page's slowest query (to see that the partner leads on an index).

Target (issue 19): p95 < 50 ms for the 200,000-invoice partner's list pages.
Uses DATABASE_URL when set (a fresh database is created in it), else a throwaway PostgreSQL.
`--keep DIR` keeps a PostgreSQL cluster in DIR between runs instead: the first run fills it,
later runs start it, apply new migrations and measure the same rows (the fill happens once).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_common as common

# Values for the columns we fill; any other NOT NULL column without a default gets a neutral
# value for its type (so the bench survives new columns).
NEUTRAL = {
    "character varying": "''",
    "text": "''",
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "numeric": "0",
    "boolean": "false",
    "date": "current_date",
    "timestamp with time zone": "now()",
    "jsonb": "'{}'::jsonb",
}


def required_columns(cur, table: str) -> dict[str, str]:
    cur.execute(
        """SELECT column_name, data_type FROM information_schema.columns
           WHERE table_name = %s AND is_nullable = 'NO' AND column_default IS NULL
             AND is_generated = 'NEVER' AND column_name <> 'id'""",
        [table],
    )
    return dict(cur.fetchall())


def insert_select(cur, table: str, given: dict[str, str], source: str) -> None:
    columns = dict(given)
    for name, kind in required_columns(cur, table).items():
        columns.setdefault(name, NEUTRAL.get(kind, "''"))
    names = ", ".join(columns)
    values = ", ".join(columns.values())
    cur.execute(f"INSERT INTO {table} ({names}) SELECT {values} FROM {source}")


def start_kept(directory: str) -> None:
    """Start (creating it on first use) the PostgreSQL cluster kept in `directory`, and point
    DATABASE_URL at its `paysync_lists` database; stopped, not removed, at exit."""
    import atexit
    import glob
    import subprocess

    import psycopg2

    data = Path(directory).resolve()
    pg_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to postgres
            import shutil

            shutil.chown(data, "postgres")
        subprocess.run(
            common._as_pg([f"{pg_bin}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = common.free_port()
    opts = (
        f"-p {port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB"
    )
    log = f"/tmp/paysync-list-pg-{os.getpid()}.log"
    subprocess.run(
        common._as_pg([f"{pg_bin}/pg_ctl", "-D", str(data), "-l", log, "-w", "-o", opts, "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stop = [f"{pg_bin}/pg_ctl", "-D", str(data), "-m", "fast", "stop"]
    atexit.register(lambda: subprocess.run(common._as_pg(stop), stdout=subprocess.DEVNULL))
    base = f"postgres://postgres@127.0.0.1:{port}"
    admin = psycopg2.connect(f"{base}/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'paysync_lists'")
        if cur.fetchone() is None:
            cur.execute("CREATE DATABASE paysync_lists")
    admin.close()
    # start_services() makes (and drops at exit) a scratch database in this cluster and starts
    # Redis; the bench then uses the kept database.
    os.environ["DATABASE_URL"] = f"{base}/postgres"
    common.start_services()
    os.environ["DATABASE_URL"] = f"{base}/paysync_lists"
    print(f"==> kept PostgreSQL in {data} on 127.0.0.1:{port}")


def filled(partners: int, invoices: int) -> bool:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM partners_partner), count(*) FROM invoices_invoice"
        )
        have_partners, have_invoices = cur.fetchone()
    if (have_partners, have_invoices) == (0, 0):
        return False
    if have_partners != partners or abs(have_invoices - invoices) > partners:
        sys.exit(
            f"the kept database holds {have_partners:,} partners and {have_invoices:,} invoices, "
            "not the sizes asked for: remove the --keep directory"
        )
    print(f"reusing {have_partners:,} partners, {have_invoices:,} invoices")
    return True


def fill(partners: int, invoices: int, big: int) -> None:
    from django.db import connection

    per_partner = max(1, (invoices - big) // max(1, partners - 1))
    started = time.perf_counter()
    with connection.cursor() as cur:
        insert_select(
            cur,
            "partners_partner",
            {
                "name": "'Partner ' || g",
                "slug": "'partner-' || g",
                "primary_integration": "'autotask'",
                "time_zone": "'UTC'",
            },
            f"generate_series(1, {partners}) g",
        )
        cur.execute("SELECT min(id) FROM partners_partner")
        first = cur.fetchone()[0]
        # Invoice k of partner p: the big partner (first) has `big`, the others `per_partner`.
        cur.execute(
            "CREATE TEMP TABLE inv_plan AS "
            f"SELECT {first} AS partner_id, g AS k FROM generate_series(1, {big}) g "
            "UNION ALL "
            f"SELECT p.id, g FROM partners_partner p, generate_series(1, {per_partner}) g "
            f"WHERE p.id <> {first}"
        )
        insert_select(
            cur,
            "customers_customer",
            {
                "partner_id": "partner_id",
                "source": "'autotask'",
                "autotask_id": "k / 20",
                "name": "'Customer ' || (k / 20)",
                "number": "'C-' || (k / 20)",
                "currency": "'USD'",
                "active": "true",
                "created_at": "now()",
                "updated_at": "now()",
            },
            "(SELECT DISTINCT partner_id, (k / 20) * 20 AS k FROM inv_plan) c",
        )
        cur.execute(
            "CREATE TEMP TABLE cust_map AS "
            "SELECT id, partner_id, autotask_id FROM customers_customer"
        )
        cur.execute("CREATE INDEX ON cust_map (partner_id, autotask_id)")
        insert_select(
            cur,
            "invoices_invoice",
            {
                "partner_id": "i.partner_id",
                "customer_id": "c.id",
                "source": "'autotask'",
                "autotask_id": "i.k",
                "number": "'INV-' || i.k",
                "autotask_invoice_number": "'INV-' || i.k",
                "invoice_date": "date '2024-01-01' + (i.k % 700)",
                "due_date": "date '2024-01-31' + (i.k % 700)",
                "currency": "'USD'",
                "total": "100 + (i.k % 900)",
                "tax": "0",
                "credits": "0",
                # a third paid here, a sixth paid in Autotask, the rest open
                "paid_here": "CASE WHEN i.k % 3 = 0 THEN 100 + (i.k % 900) ELSE 0 END",
                "paid_in_autotask_on": "CASE WHEN i.k % 6 = 1 THEN date '2024-03-01' END",
                "voided": "i.k % 50 = 7",
                "created_at": "now()",
                "updated_at": "now()",
            },
            "inv_plan i JOIN cust_map c "
            "ON c.partner_id = i.partner_id AND c.autotask_id = i.k / 20",
        )
        insert_select(
            cur,
            "payments_payment",
            {
                "partner_id": "v.partner_id",
                "invoice_id": "v.id",
                "amount": "v.total",
                "currency": "'USD'",
                "received_at": (
                    "timestamptz '2024-01-01' + (v.autotask_id % 700) * interval '1 day'"
                ),
                "status": "'succeeded'",
                "created_at": "now()",
                "updated_at": "now()",
            },
            "invoices_invoice v WHERE v.paid_here > 0 AND v.autotask_id % 4 = 0",
        )
        # The invoices' triggers appended their open balances: beat folds them within a minute.
        from invoices.services import open_balances_fold

        folded_at = time.perf_counter()
        customers = open_balances_fold()
        print(f"folded {customers:,} customers' open balances in "
              f"{time.perf_counter() - folded_at:.1f} s")  # fmt: skip
        # What autovacuum does after a big load: statistics, and the visibility map that lets
        # the counts be index-only scans.
        cur.execute("VACUUM ANALYZE")
        cur.execute("SELECT count(*) FROM invoices_invoice")
        total = cur.fetchone()[0]
    print(
        f"filled {partners:,} partners, {total:,} invoices "
        f"(biggest partner {big:,}) in {time.perf_counter() - started:.0f} s"
    )


# {customer}: a customer of the biggest partner. CSV pages are timed to their first row (the
# export streams the rest: bench/csv_export.py).
PAGES = [
    ("dashboard invoices", "/invoices/"),
    ("dashboard invoices page 50", "/invoices/?page=50"),
    ("dashboard invoices open", "/invoices/?status=open"),
    ("dashboard invoices search", "/invoices/?q=INV-1999"),
    ("dashboard invoices search customer", "/invoices/?q=Customer 999"),
    ("dashboard invoices by number", "/invoices/?sort=number"),
    ("dashboard invoices by customer", "/invoices/?sort=customer"),
    ("dashboard invoices by total", "/invoices/?sort=-total"),
    ("dashboard invoices by outstanding", "/invoices/?sort=-outstanding"),
    ("dashboard invoices by status", "/invoices/?sort=status"),
    ("dashboard invoices by due date", "/invoices/?sort=due_date"),
    ("dashboard invoices date range", "/invoices/?from=2024-06-01&to=2024-06-30"),
    ("dashboard invoices due range", "/invoices/?dates=due&from=2024-06-01&to=2024-06-30"),
    ("dashboard invoices of a customer", "/invoices/?customer={customer}"),
    ("dashboard invoices archived too", "/invoices/?archived=all"),
    ("dashboard invoices CSV (first row)", "/invoices/export.csv"),
    ("dashboard customers", "/customers/"),
    ("dashboard customers search", "/customers/?q=Customer 99"),
    ("dashboard customers by outstanding", "/customers/?sort=-outstanding"),
    ("dashboard customer page", "/invoices/customers/{customer}/"),
    ("dashboard customers CSV (first row)", "/invoices/customers/export.csv"),
    ("dashboard payments", "/payments/"),
    ("dashboard home", "/"),
    ("api invoices", "/api/v1/invoices/"),
    ("api invoices open", "/api/v1/invoices/?status=open"),
    ("api invoices search", "/api/v1/invoices/?search=INV-1999"),
    ("api invoices by total", "/api/v1/invoices/?ordering=-total"),
    ("api invoices date range", "/api/v1/invoices/?from=2024-06-01&to=2024-06-30"),
    ("api invoices of a customer", "/api/v1/invoices/?customer={customer}"),
    ("api customers", "/api/v1/customers/"),
    ("api payments", "/api/v1/payments/"),
]


def get(client, path: str):
    """One request; a streamed answer is read to its first row (the header, then one row)."""
    response = client.get(path)
    if response.streaming:
        chunks = iter(response.streaming_content)
        next(chunks, b"")
        next(chunks, b"")
        response.close()
    return response


def measure(repeat: int, explain: bool, only: str = "") -> list[tuple[str, float, float, int]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from customers.models import Customer
    from partners.models import Partner, User

    partner = Partner.objects.order_by("id").first()
    user = User.objects.filter(username="bench-owner").first() or User.objects.create_user(
        "bench-owner", password="bench-pw-1", partner=partner, role="owner"
    )
    client = Client()
    client.force_login(user)
    customer = (
        Customer.objects.for_partner(partner).order_by("id").values_list("id", flat=True)[100]
    )
    rows = []
    for name, template in PAGES:
        if only and only not in name:
            continue
        path = template.format(customer=customer)
        response = get(client, path)
        if response.status_code != 200:
            print(f"  {name}: HTTP {response.status_code} (skipped)")
            continue
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            get(client, path)
            times.append((time.perf_counter() - t0) * 1000)
        with CaptureQueriesContext(connection) as queries:
            get(client, path)
        times.sort()
        p95 = times[max(0, int(len(times) * 0.95) - 1)]
        rows.append((name, statistics.median(times), p95, len(queries)))
        if explain:
            slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS OFF) " + slowest["sql"])
                plan = [r[0] for r in cur.fetchall()]
            print(f"\n== {name}: slowest query {float(slowest['time']) * 1000:.1f} ms")
            print("  " + slowest["sql"][:400])
            print("  " + "\n  ".join(plan[:14]))
            others = sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[1:6]
            for q in others:
                print(f"  then {float(q['time']) * 1000:.1f} ms: {q['sql'][:160]}")
        used = set()
        with connection.cursor() as cur:  # any Seq Scan on invoices in the page's queries
            for q in queries.captured_queries:
                if "invoices_invoice" not in q["sql"] or not q["sql"].startswith("SELECT"):
                    continue
                cur.execute("EXPLAIN " + q["sql"])
                plan = "\n".join(r[0] for r in cur.fetchall())
                used.update(re.findall(r" using (\S+) on invoices_invoice", plan))
                used.update(re.findall(r"Bitmap Index Scan on (invoice\S+)", plan))
                if "Seq Scan on invoices_invoice" in plan:
                    print(f"  {name}: SEQ SCAN on invoices_invoice: " + q["sql"][:300])
        print(f"  {name}: invoices indexes {', '.join(sorted(used)) or '-'}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--invoices", type=int, default=2_000_000)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--page", default="", help="only the pages whose name contains this")
    parser.add_argument("--keep", metavar="DIR", help="PostgreSQL cluster kept between runs")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    if args.keep:
        start_kept(args.keep)
    else:
        common.start_services()
    common.migrate()
    common.setup_django()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    settings.DEBUG = False
    if not (args.keep and filled(args.partners, args.invoices)):
        fill(args.partners, args.invoices, args.big)
    rows = measure(args.repeat, args.explain, args.page)
    print(f"\n{'page':40} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for name, p50, p95, count in rows:
        flag = "" if p95 < 50 else "  (over 50 ms)"
        print(f"{name:40} {p50:8.1f} {p95:8.1f} {count:8d}{flag}")
    worst = max((r[2] for r in rows), default=0)
    print(f"\nworst p95 {worst:.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
