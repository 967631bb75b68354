"""Issue 17 item 5: sync failures in plain words with the one action, the real failure time,
Test connection and Retry now on the Integrations page, and the catch-up sync after a fix."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from integrations import connect as integration_connect
from integrations.autotask.errors import error_for_response
from integrations.guidance import PLAIN_FAILURES, plain_failure
from integrations.models import AutotaskConnection, IntegrationEvent
from sync.models import SyncRun, SyncState
from sync.services.runs import sync_run_fail

pytestmark = pytest.mark.django_db

RAW_500 = (
    "Autotask POST /zones/ww5/ATServicesRest/V1.0/PaymentTerms/query returned HTTP 500: "
    "Object reference not set to an instance of an object."
)
RAW_MARKERS = ("HTTP", "POST", "/zones", "PaymentTerms", "Object reference")


def _response_error(status, body, *, path="/ATServicesRest/V1.0/PaymentTerms/query"):
    error, _ = error_for_response(
        status=status, headers={}, content=body, method="POST", path=path, entity="PaymentTerms"
    )
    return error


# Every kind the client raises, from a real response where there is one.
CLIENT_ERRORS = {
    "500 with errors on PaymentTerms": (500, b'{"errors": ["Object reference not set."]}'),
    "500 without a body": (500, b""),
    "503 HTML page": (503, b"<html><body>Service Unavailable</body></html>"),
    "timeout 408": (408, b""),
    "429": (429, b'{"errors": ["Too many requests"]}'),
    "thread limit": (500, b'{"errors": ["Itgenatr005: thread threshold exceeded"]}'),
    "unknown user": (500, b'{"errors": ["Zone information could not be determined"]}'),
    "integration code": (500, b'{"errors": ["IntegrationCode is invalid"]}'),
    "permission 403": (403, b""),
    "permission 500": (500, b'{"errors": ["User does not have the adequate permissions"]}'),
    "bad secret": (401, b""),
    "404": (404, b'{"errors": ["not found"]}'),
    "HTML 200": (200, b"<html>login</html>"),
}


@pytest.mark.parametrize("case", sorted(CLIENT_ERRORS))
def test_every_client_error_kind_has_a_plain_sentence_without_http_text(case):
    error = _response_error(*CLIENT_ERRORS[case])
    assert error is not None
    kind = f"auth:{error.kind}" if error.kind in {"bad_secret", "permission"} else error.kind
    text = plain_failure(kind, run_id=7)
    assert (error.kind in PLAIN_FAILURES) and text.startswith(PLAIN_FAILURES[error.kind])
    for marker in RAW_MARKERS:
        assert marker not in text, (case, text)
    assert str(error.status or "") not in text.split("run #")[0]


def test_the_500_on_payment_terms_names_the_permission_to_check_and_the_run_for_support():
    error = _response_error(500, b'{"errors": ["Object reference not set."]}')
    assert (type(error).__name__, error.kind) == ("AutotaskRequestError", "request")
    text = plain_failure(error.kind, run_id=42)
    assert "'API User (system)'" in text and "Retry now" in text
    assert text.endswith("contact support and quote run #42.")


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        ("auth:permission", "Test connection"),
        ("permission", "Test connection"),
        ("auth:bad_secret", "Edit connection"),
        ("unknown_user", "Edit connection"),
        ("bad_integration_code", "Integration Vendor"),
        ("throttled", "waits for Autotask's limit"),
        ("budget", "continues by itself"),
        ("server_error", "Retry now"),
        ("worker_lost", "Retry now"),
        ("internal", "Retry now"),
        ("credentials", "Edit connection"),
        ("something new", "Retry now"),
        ("unreachable", "Test connection"),
        ("rate_limited", "Wait for Autotask's limit"),
        ("different_database", "Edit connection"),
    ],
)
def test_each_kind_says_its_one_action(kind, action):
    assert action in plain_failure(kind)


def test_support_is_named_only_where_the_partner_cannot_fix_it():
    assert "support" not in plain_failure("auth:permission", run_id=3)
    assert "support" not in plain_failure("throttled", run_id=3)
    assert "quote run #3" in plain_failure("internal", run_id=3)
    assert "quote run #3" in plain_failure("unheard_of", run_id=3)


@pytest.fixture
def connected_a(partner_a, connect):
    return connect(partner_a)


def test_integrations_page_shows_plain_guidance_not_the_raw_http_text(client_a, connected_a):
    connected_a.record_error("request", RAW_500, needs_attention=False)
    html = client_a.get(reverse("dashboard:integrations")).content.decode()
    assert PLAIN_FAILURES["request"] in html.replace("&#x27;", "'")
    for marker in ("HTTP 500", "/zones/", "Object reference"):
        assert marker not in html
    assert 'id="retry-now"' in html and 'id="test-connection"' in html
    # Ops keep the raw text.
    assert AutotaskConnection.objects.get(pk=connected_a.pk).last_error_message == RAW_500


def test_run_page_keeps_raw_detail_for_ops_only(client_a, connected_a):
    run = connected_a.first_run
    sync_run_fail(run, error_kind="request", message=RAW_500)
    html = client_a.get(reverse("sync:run-detail", args=[run.pk])).content.decode()
    assert "Object reference" not in html and "HTTP 500" not in html
    assert f"quote run #{run.pk}" in html
    api = client_a.get(reverse("api:sync-run-detail", args=[run.pk])).json()
    assert "HTTP 500" not in api["error_text"]


def test_needs_attention_since_is_the_first_failure_not_the_connect_time(
    client_a, partner_a, connect
):
    partner_a.time_zone = "UTC"
    partner_a.save()
    connected_at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    failed_at = datetime(2026, 3, 2, 13, 45, tzinfo=UTC)
    with time_machine.travel(connected_at, tick=False):
        conn = connect(partner_a)
    with time_machine.travel(failed_at, tick=False):
        conn.record_error("permission", "HTTP 403", needs_attention=True)
    with time_machine.travel(failed_at + timedelta(hours=2), tick=False):
        conn.record_error("permission", "HTTP 403", needs_attention=True)  # still failing
        html = client_a.get(reverse("dashboard:integrations")).content.decode()
    conn.refresh_from_db()
    assert (conn.status, conn.attention_since) == ("needs_attention", failed_at)
    since = html.split('id="attention-since">')[1].split("<")[0]
    assert since == "today 13:45 UTC"
    assert "08:00" not in since


def test_saving_fixed_credentials_restores_and_queues_one_catch_up_sync(
    client_a, connected_a, autotask_sandbox, user_a
):
    SyncRun.objects.filter(partner=connected_a.partner).update(status=SyncRun.Status.SUCCEEDED)
    SyncState.objects.filter(partner=connected_a.partner).update(
        last_success={"initial": "2026-03-01T08:00:00+00:00"}
    )
    connected_a.record_error("permission", "HTTP 403", needs_attention=True)
    db = autotask_sandbox.db
    response = client_a.post(
        reverse("integrations:autotask-edit"),
        {
            "account_email": "ops@example.test",
            "identifier": "invoice_number",
            "username": db.username,
            "secret": db.secret,
        },
    )
    catch_up = SyncRun.objects.get(partner=connected_a.partner, status=SyncRun.Status.QUEUED)
    assert response.status_code == 302
    assert response["Location"] == reverse("sync:run-detail", args=[catch_up.pk])
    assert (catch_up.kind, catch_up.trigger) == (SyncRun.Kind.NEW_DATA, SyncRun.Trigger.CONNECT)
    conn = AutotaskConnection.objects.get(pk=connected_a.pk)
    assert (conn.status, conn.last_error_kind, conn.attention_since) == ("connected", "", None)
    assert conn.restored_at is not None
    event = IntegrationEvent.objects.filter(partner=connected_a.partner).first()
    assert event.details["fixed"] is True and "credentials" in event.details["changed"]


def test_an_unchanged_save_or_new_credentials_on_a_healthy_connection_queue_nothing(
    connected_a, autotask_sandbox, user_a
):
    SyncRun.objects.filter(partner=connected_a.partner).update(status=SyncRun.Status.SUCCEEDED)
    conn = integration_connect.autotask_update(
        connection=connected_a, actor=user_a, account_email="ops@example.test"
    )
    assert conn.catch_up_run is None
    db = autotask_sandbox.db
    conn = integration_connect.autotask_update(
        connection=connected_a, actor=user_a, username=db.username, secret=db.secret
    )
    assert conn.catch_up_run is None
    assert conn.restored_at is None
    assert not SyncRun.objects.filter(partner=connected_a.partner, status="queued").exists()


def test_fixed_credentials_with_a_data_run_already_queued_add_no_second_one(
    connected_a, autotask_sandbox, user_a
):
    connected_a.record_error("permission", "HTTP 403", needs_attention=True)
    db = autotask_sandbox.db
    conn = integration_connect.autotask_update(
        connection=connected_a, actor=user_a, username=db.username, secret=db.secret
    )
    assert conn.status == "connected" and conn.catch_up_run is None
    assert SyncRun.objects.filter(partner=connected_a.partner).count() == 1  # the first run


def test_test_connection_restores_a_fixed_connection_and_queues_the_catch_up(client_a, connected_a):
    SyncRun.objects.filter(partner=connected_a.partner).update(status=SyncRun.Status.SUCCEEDED)
    connected_a.record_error("permission", "HTTP 403", needs_attention=True)
    response = client_a.post(reverse("integrations:autotask-test"))
    catch_up = SyncRun.objects.get(partner=connected_a.partner, status=SyncRun.Status.QUEUED)
    assert response["Location"] == reverse("sync:run-detail", args=[catch_up.pk])
    conn = AutotaskConnection.objects.get(pk=connected_a.pk)
    assert conn.status == "connected" and conn.restored_at is not None
    # A second test on the healthy connection changes nothing.
    response = client_a.post(reverse("integrations:autotask-test"))
    assert response["Location"] == reverse("dashboard:integrations")
    assert SyncRun.objects.filter(partner=connected_a.partner, status="queued").count() == 1


def test_test_connection_refused_marks_needs_attention_with_plain_words(
    client_a, connected_a, autotask_sandbox
):
    autotask_sandbox.db.secret = "rotated-by-the-msp"
    response = client_a.post(reverse("integrations:autotask-test"), follow=True)
    html = response.content.decode()
    assert "refused the Password (Secret)" in html
    conn = AutotaskConnection.objects.get(pk=connected_a.pk)
    assert (conn.status, conn.last_error_kind) == ("needs_attention", "bad_secret")
    assert conn.attention_since is not None
    assert "HTTP 401" not in html


def test_test_connection_needs_a_manager(client, make_user, partner_a, connected_a):
    member = make_user(partner_a, role="member")
    client.force_login(member)
    response = client.post(reverse("integrations:autotask-test"))
    assert response.status_code in (302, 403)
    assert SyncRun.objects.filter(partner=partner_a).count() == 1


def test_api_patch_with_fixed_credentials_returns_the_catch_up_run(
    api_a, connected_a, autotask_sandbox
):
    SyncRun.objects.filter(partner=connected_a.partner).update(status=SyncRun.Status.SUCCEEDED)
    connected_a.record_error("bad_secret", "HTTP 401", needs_attention=True)
    db = autotask_sandbox.db
    body = {"username": db.username, "secret": db.secret}
    response = api_a.patch("/api/v1/integrations/autotask/", body, format="json")
    assert response.status_code == 200
    run = SyncRun.objects.get(partner=connected_a.partner, status=SyncRun.Status.QUEUED)
    assert response.json()["sync_run_id"] == run.id
    assert (response.json()["status"], response.json()["attention_since"]) == ("connected", None)
    again = api_a.patch("/api/v1/integrations/autotask/", body, format="json")
    assert "sync_run_id" not in again.json()  # nothing to fix any more
    assert SyncRun.objects.filter(partner=connected_a.partner, status="queued").count() == 1
