"""Zone discovery and authentication errors (API.md §1, §2)."""

import requests

from sandbox.state import SandboxDatabase
from tests.sandbox.conftest import AutotaskHttp


def test_zone_information_points_at_the_database_zone(autotask_sandbox):
    db = autotask_sandbox.db
    response = requests.get(autotask_sandbox.zone_lookup_url, params={"user": db.username})
    assert response.status_code == 200
    assert response.json() == {
        "zoneName": "Sandbox Zone",
        "url": f"{autotask_sandbox.base_url}/zones/{db.ci}/ATServicesRest/",
        "webUrl": f"{autotask_sandbox.base_url}/zones/{db.ci}/web/",
        "ci": db.ci,
    }


def test_zone_information_for_an_unknown_user_is_500(autotask_sandbox):
    response = requests.get(autotask_sandbox.zone_lookup_url, params={"user": "nobody@x.test"})
    assert response.status_code == 500
    assert response.json() == {"errors": ["Zone information could not be determined"]}


def test_fixture_points_django_settings_at_the_sandbox(autotask_sandbox, settings):
    assert autotask_sandbox.zone_lookup_url == settings.AUTOTASK_ZONE_LOOKUP_URL
    assert autotask_sandbox.db.integration_code == "PAYSYNC-TEST-INTEGRATION-CODE"
    assert autotask_sandbox.db.secret.startswith("sandbox-secret-")


def test_unknown_user_is_500(autotask_sandbox):
    at = AutotaskHttp(autotask_sandbox, autotask_sandbox.db, UserName="nobody@x.test")
    response = at.get("Companies/entityInformation")
    assert response.status_code == 500 and response.json()["errors"]


def test_bad_secret_is_401_with_an_empty_or_json_body(autotask_sandbox):
    at = AutotaskHttp(autotask_sandbox, autotask_sandbox.db, Secret="wrong")
    response = at.get("Companies/entityInformation")
    assert response.status_code == 401 and response.content == b""
    autotask_sandbox.db.set_switches(unauthorized_body="json")
    response = at.get("Companies/entityInformation")
    assert response.status_code == 401 and "Message" in response.json()
    assert autotask_sandbox.db.requests(status=401)


def test_bad_integration_code_is_500(autotask_sandbox):
    at = AutotaskHttp(autotask_sandbox, autotask_sandbox.db, ApiIntegrationCode="NOPE")
    response = at.get("Companies/entityInformation")
    assert response.status_code == 500
    assert "IntegrationCode is invalid" in response.json()["errors"][0]


def test_wrong_zone_is_401(make_sandbox):
    one = SandboxDatabase(username="one@x.test", secret="s1", integration_code="C", invoices=3)
    two = SandboxDatabase(username="two@x.test", secret="s2", integration_code="C", invoices=3)
    server = make_sandbox(databases=[one, two])
    at = AutotaskHttp(server, one)
    at.zone = two.zone_url
    assert at.get("Invoices/entityInformation").status_code == 401
    root = requests.get(
        f"{server.base_url}/atservicesrest/v1.0/Invoices/entityInformation",
        headers={"UserName": one.username, "Secret": "s1", "ApiIntegrationCode": "C"},
    )
    assert root.status_code == 401
    assert AutotaskHttp(server, two).get("Invoices/entityInformation").status_code == 200


def test_each_database_has_its_own_data(make_sandbox):
    one = SandboxDatabase(username="one@x.test", secret="s1", integration_code="C", seed=1)
    two = SandboxDatabase(username="two@x.test", secret="s2", integration_code="C", seed=2)
    server = make_sandbox(databases=[one, two])
    two.set_switches(invoice_delete=True)  # legacy: deleting is the simplest visible change
    two.delete_invoice(two.invoices()[0]["id"])
    count_one = AutotaskHttp(server, one).post("Invoices/query/count", {"filter": []}).json()
    count_two = AutotaskHttp(server, two).post("Invoices/query/count", {"filter": []}).json()
    assert count_one == {"queryCount": 100} and count_two == {"queryCount": 99}
    assert server.database("TWO@x.test") is two


def test_permission_switch(at):
    at.db.set_switches(permission_denied=True)
    response = at.get("Invoices/1")
    assert response.status_code == 500
    assert response.json() == {
        "errors": [
            "The logged in Resource does not have the adequate permissions to access this entity."
        ]
    }
    at.db.set_switches(permission_status=403)
    assert at.get("Invoices/1").status_code == 403
