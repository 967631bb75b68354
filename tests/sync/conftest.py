import pytest

from integrations import services as integration_services
from sync.models import SyncRun


@pytest.fixture
def connect(autotask_sandbox):
    """Connect a partner to the sandbox the way the Connect form does; returns the connection
    with its first (queued, not yet run) SyncRun on `.first_run`."""

    def do_connect(partner, *, user=None, identifier="invoice_number", filters=None, server=None):
        server = server or autotask_sandbox
        db = server.db if server is autotask_sandbox else server.databases[0]
        return integration_services.autotask_connect(
            partner=partner,
            actor=user,
            account_email="ops@example.test",
            username=db.username,
            secret=db.secret,
            identifier=identifier,
            filters=filters or {},
        )

    return do_connect


@pytest.fixture
def run_now():
    """Run a SyncRun to its end in this process (the Celery task calls the same service)."""
    from sync.services import execute_run

    def do_run(run: SyncRun) -> SyncRun:
        return execute_run(partner=run.partner, run_id=run.id)

    return do_run


@pytest.fixture
def new_run():
    from sync.services import sync_run_create

    def make(partner, kind, trigger=SyncRun.Trigger.MANUAL):
        return sync_run_create(partner=partner, kind=kind, trigger=trigger)

    return make
