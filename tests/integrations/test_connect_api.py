"""Connect Autotask through the API (issue: connect): each failure has its own answer and
nothing is saved on failure; the secret is write-only; cross-partner requests see nothing."""

import pytest
from django.db import connection as db_connection
from django.urls import reverse
from rest_framework.test import APIClient

from integrations.models import AutotaskConnection, IntegrationEvent
from invoices.models import Invoice
from partners.models import User
from sync.models import SyncRun

pytestmark = pytest.mark.django_db
URL = reverse("api:autotask-connection")
PREVIEW = reverse("api:autotask-preview")


def body(db, **overrides):
    data = {
        "account_email": "billing@alpha.test",
        "username": db.username,
        "secret": db.secret,
        "identifier": "invoice_number",
        "filters": {},
    }
    data.update(overrides)
    return data


def assert_nothing_saved():
    assert AutotaskConnection.objects.count() == 0
    assert SyncRun.objects.count() == 0
    assert IntegrationEvent.objects.count() == 0


def test_connect_succeeds_and_starts_initial_sync(api_a, partner_a, autotask_sandbox):
    db = autotask_sandbox.db
    response = api_a.post(URL, body(db), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "connected"
    assert data["username"] == "••••" + db.username[-4:]
    assert db.secret not in response.content.decode()
    assert db.username not in response.content.decode()
    run = SyncRun.objects.get(partner=partner_a)
    assert (run.kind, run.trigger, run.status) == ("initial", "connect", "queued")
    assert data["sync_run_id"] == run.id
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secret, username FROM integrations_autotaskconnection")
        raw_secret, raw_username = cursor.fetchone()
    assert db.secret not in raw_secret and raw_secret.startswith("v1:")
    assert db.username not in raw_username


@pytest.mark.parametrize(
    ("mutate", "code", "status"),
    [
        (lambda db, s: {"secret": "wrong-secret"}, "bad_secret", 400),
        (lambda db, s: {"username": "nobody@sandbox.test"}, "unknown_user", 400),
    ],
)
def test_credential_failures(api_a, autotask_sandbox, mutate, code, status, settings):
    db = autotask_sandbox.db
    response = api_a.post(URL, body(db, **mutate(db, settings)), format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert "wrong-secret" not in response.content.decode()
    assert_nothing_saved()


def test_wrong_integration_vendor(api_a, autotask_sandbox, settings):
    settings.AUTOTASK_INTEGRATION_CODE = "SOMEONE-ELSES-CODE"
    response = api_a.post(URL, body(autotask_sandbox.db), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_integration_code"
    assert "Integration Vendor" in response.json()["detail"]
    assert_nothing_saved()


def test_missing_permission(api_a, autotask_sandbox):
    autotask_sandbox.db.set_switches(permission_denied=True)
    response = api_a.post(URL, body(autotask_sandbox.db), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "permission"
    assert "Security Level" in response.json()["detail"]
    assert_nothing_saved()


def test_autotask_unreachable(api_a, autotask_sandbox, settings):
    settings.AUTOTASK_ZONE_LOOKUP_URL = "http://127.0.0.1:9/atservicesrest/v1.0/zoneInformation"
    response = api_a.post(URL, body(autotask_sandbox.db), format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "unreachable"
    assert_nothing_saved()


def test_rate_limited(api_a, autotask_sandbox):
    autotask_sandbox.db.fail_next(10, "429", entity="ThresholdInformation", retry_after=1)
    response = api_a.post(URL, body(autotask_sandbox.db), format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert_nothing_saved()


@pytest.mark.parametrize(
    ("filters", "key"),
    [
        ({"colour": "blue"}, "colour"),
        ({"invoices_from": "yesterday"}, "invoices_from"),
        ({"min_total": "lots"}, "min_total"),
        ({"company_types": [0]}, "company_types"),  # [99]: refused by the tenant's picklist
        ({"include_company_ids": ["abc"]}, "include_company_ids"),
        ({"active_only": "maybe"}, "active_only"),
    ],
)
def test_bad_filters_are_a_clear_400(api_a, autotask_sandbox, filters, key):
    before = len(autotask_sandbox.db.requests())
    response = api_a.post(URL, body(autotask_sandbox.db, filters=filters), format="json")
    assert response.status_code == 400, response.content
    data = response.json()
    assert data["code"] == "invalid_filters"
    assert key in data["errors"]["filters"]
    assert_nothing_saved()
    assert len(autotask_sandbox.db.requests()) == before  # refused before calling Autotask


def test_member_cannot_connect(make_user, partner_a, autotask_sandbox):
    member = make_user(partner_a, role=User.Role.MEMBER)
    client = APIClient()
    client.force_authenticate(member)
    assert client.post(URL, body(autotask_sandbox.db), format="json").status_code == 403
    assert_nothing_saved()


def test_connecting_twice_is_refused(api_a, autotask_sandbox):
    assert api_a.post(URL, body(autotask_sandbox.db), format="json").status_code == 201
    second = api_a.post(URL, body(autotask_sandbox.db), format="json")
    assert second.status_code == 409
    assert second.json()["code"] == "already_connected"
    assert SyncRun.objects.count() == 1


def test_other_partner_sees_and_changes_nothing(api_a, api_b, partner_a, autotask_sandbox):
    api_a.post(URL, body(autotask_sandbox.db), format="json")
    before = list(AutotaskConnection.objects.values())
    assert api_b.get(URL).status_code == 404
    assert api_b.delete(URL).status_code == 404
    assert api_b.patch(URL, {"identifier": "autotask_id"}, format="json").status_code == 404
    assert list(AutotaskConnection.objects.values()) == before


def test_get_never_shows_the_secret(api_a, autotask_sandbox):
    api_a.post(URL, body(autotask_sandbox.db), format="json")
    response = api_a.get(URL)
    assert response.status_code == 200
    text = response.content.decode()
    assert autotask_sandbox.db.secret not in text and autotask_sandbox.db.username not in text
    assert "secret" not in response.json()


def test_identifier_change_relabels_without_sync(api_a, partner_a, autotask_sandbox):
    from sync.services.runs import execute_run

    api_a.post(URL, body(autotask_sandbox.db), format="json")
    execute_run(partner=partner_a, run_id=SyncRun.objects.get().id)
    with_number = Invoice.objects.exclude(autotask_invoice_number="").first()
    assert with_number.number == with_number.autotask_invoice_number
    requests_before = len(autotask_sandbox.db.requests())
    response = api_a.patch(URL, {"identifier": "autotask_id"}, format="json")
    assert response.status_code == 200, response.content
    with_number.refresh_from_db()
    assert with_number.number == str(with_number.autotask_id)
    assert len(autotask_sandbox.db.requests()) == requests_before
    api_a.patch(URL, {"identifier": "invoice_number"}, format="json")
    with_number.refresh_from_db()
    assert with_number.number == with_number.autotask_invoice_number


def test_disconnect_erases_credentials_keeps_data(api_a, partner_a, autotask_sandbox):
    from sync.services.runs import execute_run

    api_a.post(URL, body(autotask_sandbox.db), format="json")
    execute_run(partner=partner_a, run_id=SyncRun.objects.get().id)
    invoices = Invoice.objects.count()
    response = api_a.delete(URL)
    assert response.status_code == 200
    assert response.json()["status"] == "disconnected"
    conn = AutotaskConnection.objects.get()
    assert conn.username is None and conn.secret is None
    assert Invoice.objects.count() == invoices
    assert IntegrationEvent.objects.filter(kind="disconnected").count() == 1
    # Reconnecting the same database continues from the cursors (a catch-up, not a full sync).
    again = api_a.post(URL, body(autotask_sandbox.db), format="json")
    assert again.status_code == 201
    assert SyncRun.objects.get(id=again.json()["sync_run_id"]).kind == "new_data"


def test_credentials_of_another_database_are_refused_on_edit(api_a, make_sandbox, autotask_sandbox):
    from sandbox.state import SandboxDatabase

    api_a.post(URL, body(autotask_sandbox.db), format="json")
    other = make_sandbox(
        databases=[
            SandboxDatabase(
                username="other@sandbox.test",
                secret="other-secret",
                ci=777,
                integration_code="PAYSYNC-TEST-INTEGRATION-CODE",
                invoices=3,
                companies=2,
            )
        ]
    )
    assert other  # the zone lookup now points at the second server
    response = api_a.patch(
        URL, {"username": "other@sandbox.test", "secret": "other-secret"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "different_database"
    conn = AutotaskConnection.objects.get()
    assert conn.username.reveal() == autotask_sandbox.db.username


def test_preview_counts_with_few_requests(api_a, autotask_sandbox):
    db = autotask_sandbox.db
    before = len(db.requests())
    response = api_a.post(
        PREVIEW, {"username": db.username, "secret": db.secret, "filters": {}}, format="json"
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["customers"] == len(db.companies())
    assert data["invoices"] == len([i for i in db.invoices() if not i["isVoided"]])
    assert len(db.requests()) - before <= 5
    assert AutotaskConnection.objects.count() == 0


def test_preview_with_filters(api_a, autotask_sandbox):
    db = autotask_sandbox.db
    response = api_a.post(
        PREVIEW,
        {
            "username": db.username,
            "secret": db.secret,
            "filters": {"company_types": [1], "include_voided": True},
        },
        format="json",
    )
    assert response.status_code == 200
    customer_ids = {c["id"] for c in db.companies() if c["companyType"] == 1}
    assert response.json()["customers"] == len(customer_ids)
    # Only the invoices of the companies the filter keeps: the sync skips the others.
    assert response.json()["invoices"] == len(
        [i for i in db.invoices() if i["companyID"] in customer_ids]
    )
