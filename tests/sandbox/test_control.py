"""The /_sandbox/ control surface over HTTP."""

import requests

from tests.sandbox.conftest import AutotaskHttp


def control(server, method, path, body=None):
    response = requests.request(method, f"{server.control_url}{path}", json=body, timeout=5)
    return response.status_code, response.json()


def test_list_databases(autotask_sandbox):
    status, data = control(autotask_sandbox, "GET", "databases")
    assert status == 200
    [summary] = data["databases"]
    assert summary["username"] == autotask_sandbox.db.username
    assert summary["counts"]["Invoices"] == 40
    assert "secret" not in str(summary).lower().replace("sandbox-secret", "")


def test_invoice_lifecycle_with_the_legacy_switches(autotask_sandbox):
    """Edit in place, credit in place and delete: the sandbox's earlier behaviours, still there
    behind switches (tests/sandbox/test_lifecycle.py has the defaults)."""
    server, db = autotask_sandbox, autotask_sandbox.db
    base = f"databases/{db.ci}/invoices"
    legacy = {"invoice_edit_in_place": True, "credit_in_place": True, "invoice_delete": True}
    assert control(server, "PATCH", f"databases/{db.ci}/switches", legacy)[0] == 200
    company_id = db.customers()[0]["id"]
    lines = [{"quantity": 2, "rate": 50}, {"quantity": 1, "rate": 10.5, "itemName": "Cable"}]
    status, data = control(
        server, "POST", base, {"companyID": company_id, "lines": lines, "taxRate": 0.1}
    )
    assert status == 200
    invoice = data["item"]
    assert invoice["invoiceTotal"] == 121.55 and invoice["totalTaxValue"] == 11.05
    at = AutotaskHttp(server, db)
    assert at.get(f"Invoices/{invoice['id']}").json()["item"] == invoice
    path = f"{base}/{invoice['id']}"

    _, data = control(server, "PATCH", path, {"invoiceTotal": 99.0, "dueDate": "2030-01-02"})
    assert data["item"]["invoiceTotal"] == 99.0
    assert data["item"]["dueDate"] == "2030-01-02T00:00:00.000Z"
    _, data = control(server, "PATCH", path, {"paidDate": "2030-01-01T12:00:00Z"})
    assert data["item"]["paidDate"] == "2030-01-01T00:00:00.000Z"
    _, data = control(server, "PATCH", path, {"paidDate": None})
    assert data["item"]["paidDate"] is None

    _, data = control(server, "POST", f"{path}/credits", {"amount": 20, "description": "Outage"})
    assert data["item"]["totalAmount"] == -20.0 and data["item"]["invoiceID"] == invoice["id"]
    _, data = control(server, "GET", path)
    assert data["item"]["invoiceTotal"] == 79.0
    assert [line["totalAmount"] for line in data["lines"]][-1] == -20.0

    _, data = control(server, "POST", f"{path}/void")
    assert data["item"]["isVoided"] is True and data["item"]["voidedDate"]

    assert control(server, "DELETE", path)[0] == 200
    assert control(server, "GET", path)[0] == 404
    assert at.get(f"Invoices/{invoice['id']}").status_code == 404
    assert control(server, "PATCH", path, {"invoiceTotal": 1})[0] == 404
    assert control(server, "PATCH", f"{base}/{db.invoices()[0]['id']}", {"bogus": 1})[0] == 400


def test_invoice_without_number(autotask_sandbox):
    db = autotask_sandbox.db
    record = db.create_invoice(db.customers()[0]["id"], invoice_number="")
    assert record["invoiceNumber"] == ""


def test_company_routes(autotask_sandbox):
    server, db = autotask_sandbox, autotask_sandbox.db
    status, data = control(
        server, "POST", f"databases/{db.username}/companies", {"companyName": "Zeta Dental"}
    )
    assert status == 200
    company_id = data["item"]["id"]
    at = AutotaskHttp(server, db)
    found = at.query("Companies", {"op": "eq", "field": "companyName", "value": "zeta dental"})
    assert [c["id"] for c in found.json()["items"]] == [company_id]
    _, data = control(
        server, "PATCH", f"databases/{db.ci}/companies/{company_id}", {"isActive": False}
    )
    assert data["item"]["isActive"] is False
    assert control(server, "DELETE", f"databases/{db.ci}/companies/{company_id}")[0] == 200
    assert at.get(f"Companies/{company_id}").status_code == 404


def test_faults_and_switches_routes(autotask_sandbox):
    server, db = autotask_sandbox, autotask_sandbox.db
    at = AutotaskHttp(server, db)
    status, data = control(
        server, "POST", f"databases/{db.ci}/faults/next", {"count": 1, "kind": "503_empty"}
    )
    assert status == 200 and data["queued"][0]["kind"] == "503_empty"
    assert at.get("Companies/entityInformation").status_code == 503
    _, data = control(
        server, "PUT", f"databases/{db.ci}/faults", {"error_rate": 1.0, "kinds": ["500_plain"]}
    )
    assert at.get("Companies/entityInformation").status_code == 500
    control(server, "DELETE", f"databases/{db.ci}/faults")
    assert at.get("Companies/entityInformation").status_code == 200
    assert control(server, "PUT", f"databases/{db.ci}/faults", {"kinds": ["nope"]})[0] == 400

    _, data = control(
        server, "PATCH", f"databases/{db.ci}/switches", {"missing_item": "null", "threshold": 50}
    )
    assert data["missing_item"] == "null" and db.threshold == 50
    assert at.get("Invoices/1").json() == {"item": None}
    assert control(server, "PATCH", f"databases/{db.ci}/switches", {"nope": 1})[0] == 400


def test_request_log_and_reset(autotask_sandbox):
    server, db = autotask_sandbox, autotask_sandbox.db
    at = AutotaskHttp(server, db)
    invoice = db.invoices()[0]
    at.patch("Invoices", {"id": invoice["id"], "webServiceDate": "2025-10-01T00:00:00Z"})
    at.get(f"Invoices/{invoice['id']}")
    status, data = control(
        server, "GET", f"databases/{db.ci}/requests?entity=invoices&method=PATCH"
    )
    assert status == 200
    [entry] = data["requests"]
    assert entry["method"] == "PATCH" and entry["status"] == 200 and entry["entity"] == "Invoices"
    assert entry["body"] == {"id": invoice["id"], "webServiceDate": "2025-10-01T00:00:00Z"}
    assert entry["path"].endswith("/V1.0/Invoices") and entry["timestamp"].endswith("Z")
    assert data["requestsThisHour"] == 2
    assert db.secret not in str(data)
    _, data = control(server, "DELETE", f"databases/{db.ci}/requests")
    assert data == {"requests": [], "requestsThisHour": 0}
    assert db.request_log == []


def test_unknown_database_and_route(autotask_sandbox):
    assert control(autotask_sandbox, "GET", "databases/nobody@x.test")[0] == 404
    assert control(autotask_sandbox, "GET", "nothing")[0] == 404
