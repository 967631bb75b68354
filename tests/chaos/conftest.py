"""Fixtures of the reconciliation chaos test (tests/chaos/test_reconciliation_chaos.py).

`chaos_env` (needs the test's `seed`): one sandbox server with three Autotask databases, 100
open invoices each (created 1-55 days ago, ids in creation order), the processes started first
so that they boot while the rest is set up (gunicorn for the webhook endpoint, Celery workers as
in production: one on `webhooks,writeback`, one on `sync,default`, both with the short settle
time of tests/harness/chaos.py), then three partners (in three time zones), each with a user, a
webhook endpoint and a connection to its database, whose first sync (and PDF prefetch) the sync
worker runs as after a real Connect. The processes are killed by pid at teardown.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from partners.models import Partner
from payments.services import payment_settings
from sandbox import wire
from sandbox.state import SandboxDatabase
from sync.models import SyncRun
from tests import factories
from tests.harness.chaos import SETTLE_ENV, ChaosWorker, Gunicorn
from tests.harness.sync import connect_to
from tests.harness.workers import wait_for, worker_environment

PARTNERS = 3
INVOICES_PER_PARTNER = 100
COMPANIES_PER_DATABASE = 10
TIME_ZONES = ("UTC", "America/New_York", "Asia/Tokyo")  # partner-local paid dates differ
WORKER_LEASE_SECONDS = 6  # the sync lease in the workers (production: 30 s)
SETTLE_SECONDS = 1  # the sync's settle time in the workers (production: 10 minutes)


@dataclass
class ChaosPartner:
    index: int
    partner: Partner
    user: object
    db: SandboxDatabase
    endpoint_id: str
    secret: str
    customers: list[int] = field(default_factory=list)  # invoiceable Autotask company ids


@dataclass
class ChaosEnv:
    seed: int
    server: object
    partners: list[ChaosPartner]
    env: dict[str, str]
    processes: ChaosProcesses


def _fill(db: SandboxDatabase, rng: random.Random, count: int) -> list[int]:
    """`count` open invoices over the database's customers, created 1-55 days ago (so the
    daily run's "paid within 60 days" window covers everything Autotask pays later)."""
    customers = [c["id"] for c in db.customers()]
    now = datetime.now(UTC)
    # Oldest first: Autotask ids grow with creation (the replacement rule relies on it).
    moments = sorted(
        now - timedelta(days=rng.randint(1, 55), minutes=rng.randint(0, 600)) for _ in range(count)
    )
    ids = []
    for created in moments:
        lines = [
            {"quantity": rng.randint(1, 4), "rate": rng.choice([25, 40, 75, 99.5, 150, 320])}
            for _ in range(rng.randint(1, 3))
        ]
        record = db.create_invoice(
            rng.choice(customers),
            lines=lines,
            invoice_date=created.date(),
            payment_term=rng.randint(1, 5),
            tax_rate=rng.choice([0.0, 0.0, 0.08]),
            create_date_time=wire.format_datetime(created),
        )
        ids.append(record["id"])
    return ids


@dataclass
class ChaosProcesses:
    gunicorn: Gunicorn
    payments_worker: ChaosWorker
    sync_worker: ChaosWorker

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for name, proc in (
            ("worker (webhooks, writeback)", self.payments_worker),
            ("worker (sync, default)", self.sync_worker),
        ):
            parts.append(f"--- {name} ---\n{proc.log()[-tail:]}")
        parts.append(f"--- gunicorn ---\n{self.gunicorn.log()[-tail:]}")
        return "\n".join(parts)


@pytest.fixture
def chaos_env(seed, make_sandbox, tmp_path) -> ChaosEnv:
    """The sandbox, the processes (started first: they boot while the partners are set up),
    then the partners, connected; their first syncs run on the sync worker, as after a real
    Connect."""
    rng = random.Random(seed)
    databases = [
        SandboxDatabase(
            username=f"chaos{i}@sandbox.test",
            secret=f"sandbox-secret-{secrets.token_hex(8)}",
            integration_code=settings.AUTOTASK_INTEGRATION_CODE,
            seed=seed * 10 + i,
            companies=COMPANIES_PER_DATABASE,
            invoices=0,
        )
        for i in range(PARTNERS)
    ]
    for db in databases:
        _fill(db, rng, INVOICES_PER_PARTNER)
    server = make_sandbox(databases=databases)
    env = {
        **worker_environment(server, lease_seconds=WORKER_LEASE_SECONDS),
        SETTLE_ENV: str(SETTLE_SECONDS),
    }
    from config.celery import app

    app.control.purge()  # nothing left over from earlier tests
    processes = ChaosProcesses(
        gunicorn=Gunicorn({**env, "LOG_LEVEL": "WARNING"}, tmp_path / "gunicorn.log", workers=1),
        payments_worker=ChaosWorker(
            env, tmp_path / "worker-payments.log", queues="webhooks,writeback", concurrency=2
        ),
        sync_worker=ChaosWorker(
            env, tmp_path / "worker-sync.log", queues="sync,default", concurrency=1
        ),
    )
    started = [processes.gunicorn, processes.payments_worker, processes.sync_worker]
    try:
        for proc in started:
            proc.launch()
        partners = []
        for i, db in enumerate(databases):
            partner = factories.create_partner(
                f"Chaos MSP {i}",
                primary_integration=Partner.Integration.AUTOTASK,
                time_zone=TIME_ZONES[i % len(TIME_ZONES)],
            )
            user = factories.create_user(partner)
            connect_to(partner, db)  # queues the first sync for the sync worker
            endpoint, secret = payment_settings.payment_settings_create(partner=partner)
            assert secret is not None
            partners.append(
                ChaosPartner(
                    index=i,
                    partner=partner,
                    user=user,
                    db=db,
                    endpoint_id=endpoint.endpoint_id,
                    secret=secret,
                    customers=[c["id"] for c in db.customers()],
                )
            )
        for proc in started:
            proc.wait_ready()
        ids = [p.partner.pk for p in partners]
        wait_for(
            lambda: (
                SyncRun.objects.filter(partner_id__in=ids).count() >= PARTNERS
                and not SyncRun.objects.filter(
                    partner_id__in=ids, status__in=SyncRun.ACTIVE
                ).exists()
            ),
            timeout=90,
            interval=0.2,
            what="first syncs (and their PDF prefetch) done",
        )
        failed = SyncRun.objects.filter(partner_id__in=ids).exclude(status=SyncRun.Status.SUCCEEDED)
        assert not failed.exists(), list(failed.values("kind", "status", "error_message"))
        for db in databases:
            db.reset_counters()
        yield ChaosEnv(seed=seed, server=server, partners=partners, env=env, processes=processes)
    finally:
        for proc in started:  # always, by pid, before the database is flushed
            proc.stop()
