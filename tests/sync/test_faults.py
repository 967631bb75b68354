"""SY-5: a sync against a flaky Autotask ends exactly like a clean one.

Two sandbox databases with the same seed and sizes, one partner each: the clean one syncs
without faults, the other with injected 5xx, timeouts, 429 bursts (with and without
Retry-After) and thread-limit refusals. Both mirrors must hold the same values (timestamps and
local ids aside), at a bounded request cost. The client's retry sleep is a fake (recorded, not
slept), so the test proves "never before Retry-After" without waiting for it. A 401 mid-run
fails the run, pauses the connection and sends nothing more.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer
from customers.services import SYNCED_FIELDS as CUSTOMER_FIELDS
from integrations import clients
from integrations.autotask.client import AutotaskClient
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from invoices.services import SYNCED_FIELDS as INVOICE_FIELDS
from sandbox.state import SandboxDatabase
from sync.dispatch import dispatch_due_runs
from sync.engine import SyncEngine
from sync.models import ChangeLogEntry, SyncRun
from sync.services.runs import execute_run
from tests.harness.sync import connect_to

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

COMPANIES = 1_000
INVOICES = 10_000
INVOICE_EXTRA = ["currency", "credits", "paid_here", "outstanding", "status", "source"]
INVOICE_EXTRA += ["archived_at", "missing_in_autotask_since", "autotask_fingerprint"]


@pytest.fixture
def fake_sleep(monkeypatch):
    """Every client built by the sync records its retry delays instead of sleeping, and which
    thread slept (companies and invoices are read at once by their own readers)."""
    delays: list[float] = []
    by_thread: list[tuple[str, float]] = []
    hooks: list = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        by_thread.append((threading.current_thread().name, seconds))
        for hook in hooks:
            hook(seconds)

    original = clients.build_client

    def build(connection, **options):
        client = original(connection, **options)
        client.retry.sleep = sleep
        return client

    monkeypatch.setattr(clients, "build_client", build)
    sleep.delays = delays
    sleep.by_thread = by_thread
    sleep.hooks = hooks
    return sleep


@pytest.fixture
def twin_sandboxes(make_sandbox, settings):
    """One server, two databases generated from the same seed: (clean, faulty)."""
    dbs = [
        SandboxDatabase(
            username=f"{name}@sandbox.test",
            secret=f"secret-{name}",
            integration_code=settings.AUTOTASK_INTEGRATION_CODE,
            seed=7,
            companies=COMPANIES,
            invoices=INVOICES,
        )
        for name in ("clean", "faulty")
    ]
    make_sandbox(databases=dbs)
    return dbs


def connect(partner, db) -> AutotaskConnection:
    conn = connect_to(partner, db)
    db.reset_log()  # count only the sync's own requests
    return conn


def mirror(partner) -> tuple[dict, dict]:
    """The partner's data as plain values: no local ids, no timestamps of ours."""
    customers = {
        row[0]: row[1:]
        for row in Customer.objects.filter(partner=partner).values_list(
            "autotask_id", *CUSTOMER_FIELDS, "archived_at", "missing_in_autotask_since"
        )
    }
    invoices = {
        row[0]: row[1:]
        for row in Invoice.objects.filter(partner=partner).values_list(
            "autotask_id", "customer__autotask_id", *INVOICE_FIELDS, *INVOICE_EXTRA
        )
    }
    return customers, invoices


def run_sync(conn) -> SyncRun:
    return execute_run(partner=conn.partner, run_id=conn.first_run.id)


def assert_same_mirror(partner_a, partner_b):
    a_customers, a_invoices = mirror(partner_a)
    b_customers, b_invoices = mirror(partner_b)
    assert len(a_customers) == COMPANIES
    assert len(a_invoices) > INVOICES * 0.8
    assert b_customers == a_customers
    assert b_invoices == a_invoices
    assert Invoice.objects.filter(partner=partner_b).count() == len(b_invoices)
    assert not ChangeLogEntry.objects.filter(partner=partner_b).exists()


def test_5xx_and_timeouts_end_in_the_clean_state_at_most_1_3x_requests(
    partner_a, partner_b, twin_sandboxes, fake_sleep, settings
):
    clean_db, faulty_db = twin_sandboxes
    settings.AUTOTASK_TIMEOUT_SECONDS = 0.5
    clean = run_sync(connect(partner_a, clean_db))
    assert clean.status == SyncRun.Status.SUCCEEDED, clean.error_message
    clean_requests = len(clean_db.requests())

    conn = connect(partner_b, faulty_db)
    faulty_db.set_faults(
        error_rate=0.15,
        kinds=["503_html", "503_empty", "500_plain", "500_plain", "timeout"],
        seed=11,
        timeout_seconds=0.8,  # longer than the client's read timeout: a real timeout
    )
    run = run_sync(conn)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)

    log = faulty_db.requests()
    failed = [e for e in log if e["dropped"] or e["status"] >= 500]
    assert failed, "no fault was injected: the test proves nothing"
    assert any(e["dropped"] for e in log), "no timeout was injected"
    ratio = len(log) / clean_requests
    print(f"\nSY-5 5xx/timeouts: clean {clean_requests} requests, faulty {len(log)} "
          f"({len(failed)} failed), ratio {ratio:.2f}")  # fmt: skip
    assert ratio <= 1.3
    assert len(log) == clean_requests + len(failed)  # each fault costs exactly one retry
    assert run.requests_used == len(log)
    assert_same_mirror(partner_a, partner_b)
    assert (run.created, run.updated, run.skipped) == (clean.created, clean.updated, clean.skipped)


def test_429_bursts_and_thread_limit_end_in_the_clean_state_never_before_retry_after(
    partner_a, partner_b, twin_sandboxes, fake_sleep, monkeypatch
):
    clean_db, faulty_db = twin_sandboxes
    clean = run_sync(connect(partner_a, clean_db))
    assert clean.status == SyncRun.Status.SUCCEEDED, clean.error_message
    clean_requests = len(clean_db.requests())

    conn = connect(partner_b, faulty_db)
    # Another integration holds all 3 Companies slots until our companies reader backs off:
    # its first query is refused with the thread-limit error (500 "Itgenatr005"). Companies
    # and invoices are read at once (sync/ranges.py), so each entity's refusals are checked on
    # their own: the order between the two readers is not defined.
    for _ in range(3):
        assert faulty_db.acquire_slot("Companies")
    held = [3]

    def release_slots(_seconds):
        if "companies" not in threading.current_thread().name:
            return
        while held[0]:
            faulty_db.release_slot("Companies")
            held[0] -= 1

    fake_sleep.hooks.append(release_slots)
    # A 429 burst on the first Invoices query: twice with Retry-After, twice without.
    faulty_db.fail_next(2, "429", entity="Invoices", retry_after=7)
    faulty_db.fail_next(2, "429", entity="Invoices")

    # And a burst on a later page.
    def later_burst(engine, phase):
        if phase == "invoices" and not later_burst.done:
            later_burst.done = True
            faulty_db.fail_next(3, "429", entity="Invoices", retry_after=3)

    later_burst.done = False
    original_commit = SyncEngine._commit_page

    def commit(engine, phase):
        original_commit(engine, phase)
        later_burst(engine, phase)

    monkeypatch.setattr(SyncEngine, "_commit_page", commit)
    run = run_sync(conn)
    assert run.status == SyncRun.Status.SUCCEEDED, (run.error_kind, run.error_message)

    log = faulty_db.requests()
    refused = [e for e in log if e["status"] in (429, 500)]
    by_entity = {
        entity: [e["status"] for e in refused if e["entity"] == entity]
        for entity in ("Companies", "Invoices")
    }
    # The companies' first page and their count go out at once (sync/ranges.py, count
    # ahead): one or both meet the held slots, each refused once.
    assert by_entity["Companies"] in ([500], [500, 500]), by_entity
    assert by_entity["Invoices"] == [429] * 7
    assert len(refused) == len(by_entity["Companies"]) + 7
    assert held == [0]
    # Retry-After is a floor: the sleeps after those 429s are at least 7 s and 3 s. The first
    # burst hits the invoices' first page and their count (two requests at once, so which one
    # met the two answers with Retry-After is not defined: two of the four sleeps); the later
    # one any of the range readers, so those three are checked as a set.
    companies = [d for name, d in fake_sleep.by_thread if "companies" in name]
    invoices = [d for name, d in fake_sleep.by_thread if "invoices" in name]
    assert len(companies) == len(by_entity["Companies"]), fake_sleep.by_thread
    assert len(invoices) == 7, fake_sleep.by_thread
    assert sum(d >= 7 for d in invoices[:4]) >= 2, invoices
    assert all(d >= 3 for d in invoices[4:])
    delays = fake_sleep.delays
    ratio = len(log) / clean_requests
    print(f"\nSY-5 429/thread limit: clean {clean_requests}, faulty {len(log)}, "
          f"ratio {ratio:.2f}, delays {[round(d, 2) for d in delays]}")  # fmt: skip
    assert len(log) == clean_requests + len(refused)
    assert_same_mirror(partner_a, partner_b)


def test_401_mid_run_fails_the_run_pauses_the_connection_and_stops_requests(
    partner_a, make_sandbox, fake_sleep, monkeypatch
):
    server = make_sandbox(companies=50, invoices=2_000)
    db = server.db
    conn = connect(partner_a, db)
    pages = []
    original_iter_pages = AutotaskClient.iter_pages

    def iter_pages(client, entity, query=None, **kwargs):
        # The secret changes as soon as invoice page 2 is read: page 3's request (the next
        # one, prefetched or not) is the first to get the 401.
        for page in original_iter_pages(client, entity, query, **kwargs):
            if entity == "Invoices":
                pages.append(page)
                if len(pages) == 2:
                    db.secret = "rotated-by-the-msp"  # the API user's secret changed
            yield page

    monkeypatch.setattr(AutotaskClient, "iter_pages", iter_pages)
    run = run_sync(conn)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_kind.startswith("auth")
    assert run.error_kind == "auth:bad_secret"
    conn.refresh_from_db()
    assert conn.status == AutotaskConnection.Status.NEEDS_ATTENTION
    log = db.requests()
    first_401 = next(i for i, e in enumerate(log) if e["status"] == 401)
    after = log[first_401 + 1 :]
    # Only the zone lookup (a moved zone also answers 401) may follow; no retry of the 401.
    assert all(e["entity"] == "zoneInformation" for e in after), after
    assert len([e for e in log if e["status"] == 401]) == 1
    assert fake_sleep.delays == []
    # The two committed pages stay; the run says how far it got.
    assert Invoice.objects.filter(partner=partner_a).count() == 1_000
    assert run.cursor.get("invoices_after_id")
    # Nothing more is scheduled for this partner until it reconnects (the dispatcher skips
    # connections that need attention), so no further request goes out with that secret.
    later = timezone.now() + timedelta(days=2)
    assert [r for r in dispatch_due_runs(now=later) if r.partner_id == partner_a.id] == []
    assert len(db.requests()) == len(log)
