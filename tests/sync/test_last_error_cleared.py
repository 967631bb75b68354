"""Issue 18 item 8 (part): a successful sync clears a stale "Last error" on Integrations."""

import pytest

from integrations.models import AutotaskConnection
from sync.models import SyncRun

pytestmark = pytest.mark.django_db


def test_a_successful_sync_clears_the_last_error(partner_a, connect, run_now, new_run, client_a):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == "succeeded"
    connection = AutotaskConnection.objects.get(partner=partner_a)
    connection.record_error(
        "unreachable", "Autotask did not answer in time.", needs_attention=False
    )
    assert 'id="connection-error"' in client_a.get("/integrations/").content.decode()

    run = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.OPS))
    assert run.status == "succeeded", run.error_message
    connection.refresh_from_db()
    assert (connection.last_error_kind, connection.last_error_message) == ("", "")
    assert connection.last_error_at is None
    assert 'id="connection-error"' not in client_a.get("/integrations/").content.decode()


def test_a_successful_sync_restores_a_connection_that_needed_attention(
    partner_a, connect, run_now, new_run, client_a
):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == "succeeded"
    connection = AutotaskConnection.objects.get(partner=partner_a)
    connection.record_error("bad_secret", "HTTP 401 from Autotask", needs_attention=True)
    assert 'id="sync-banner"' in client_a.get("/").content.decode()

    # e.g. the partner's "Retry now" after fixing the API user in Autotask
    run = run_now(new_run(partner_a, SyncRun.Kind.NEW_DATA, trigger=SyncRun.Trigger.MANUAL))
    assert run.status == "succeeded", run.error_message
    connection.refresh_from_db()
    assert connection.status == AutotaskConnection.Status.CONNECTED
    assert connection.attention_since is None and connection.restored_at is not None
    assert 'id="sync-banner"' not in client_a.get("/").content.decode()
