"""Switches for what the evidence leaves open (UNVERIFIED in sandbox/README.md): how an exceeded
threshold is answered, what a paidDate null or date-time does, and an invoice whose PDF
fails."""

import base64

import pytest

from sandbox.state import SandboxDatabase, Switches
from tests.sandbox.conftest import control

NEW_SWITCHES = {
    "reuse_ids": False,
    "invoice_edit_in_place": False,
    "invoice_delete": False,
    "credit_in_place": False,
    "own_company": True,
    "threshold_status": 429,
    "paid_date_null": "clear",
    "paid_date_time": "date",
    "tenant_utc_offset_hours": -5.0,
}


@pytest.fixture
def invoice(at):
    return next(i for i in at.db.invoices() if i["paidDate"] is None and not i["isVoided"])


def test_defaults_are_listed_and_settable_over_http(at):
    server, db = at.server, at.db
    status, data = control(server, "GET", f"databases/{db.ci}/switches")
    assert status == 200
    assert {name: data[name] for name in NEW_SWITCHES} == NEW_SWITCHES
    legacy = {"paid_date_null": "ignore", "threshold_status": 500, "paid_date_time": "keep_time"}
    status, data = control(server, "PATCH", f"databases/{db.ci}/switches", legacy)
    assert status == 200 and {k: data[k] for k in legacy} == legacy
    for bad in ({"threshold_status": 503}, {"paid_date_null": "no"}, {"invoice_delete": "yes"},
                {"tenant_utc_offset_hours": "x"}):  # fmt: skip
        assert control(server, "PATCH", f"databases/{db.ci}/switches", bad)[0] == 400


def test_switches_at_construction():
    db = SandboxDatabase(invoices=5, switches={"threshold_status": 500, "reuse_ids": True})
    assert db.switches.threshold_status == 500 and db.switches.reuse_ids is True
    with pytest.raises(ValueError):
        SandboxDatabase(invoices=5, switches={"nope": 1})
    assert Switches().paid_date_null == "clear"


# -- hourly threshold --------------------------------------------------------------------------


def test_threshold_exceeded_is_429_by_default_or_500_with_the_text(at):
    server, db = at.server, at.db
    db.set_switches(threshold=2, usage_delay_50=0, usage_delay_75=0, threshold_retry_after=True)
    assert at.get("Invoices/entityInformation").status_code == 200
    assert at.get("Invoices/entityInformation").status_code == 200
    refused = at.get("Invoices/entityInformation")
    assert refused.status_code == 429 and "threshold" in refused.json()["errors"][0]
    assert int(refused.headers["Retry-After"]) > 0
    control(server, "PATCH", f"databases/{db.ci}/switches", {"threshold_status": 500})
    refused = at.get("Invoices/entityInformation")
    assert refused.status_code == 500
    [text] = refused.json()["errors"]
    assert "threshold of 2 requests" in text
    control(server, "PATCH", f"databases/{db.ci}/switches", {"threshold_status": 429})
    assert at.get("Invoices/entityInformation").status_code == 429


def test_queued_500_threshold_fault(at):
    status, _ = control(
        at.server,
        "POST",
        f"databases/{at.db.ci}/faults/next",
        {"count": 1, "kind": "500_threshold", "entity": "Invoices", "retry_after": 60},
    )
    assert status == 200
    response = at.get("Invoices/entityInformation")
    assert response.status_code == 500 and response.headers["Retry-After"] == "60"
    assert "threshold of 10000 requests" in response.json()["errors"][0]
    assert at.get("Invoices/entityInformation").status_code == 200


# -- paidDate ----------------------------------------------------------------------------------


def test_paid_date_null_clears_by_default(at, invoice):
    at.patch("Invoices", {"id": invoice["id"], "paidDate": "2025-10-01"})
    assert at.patch("Invoices", {"id": invoice["id"], "paidDate": None}).status_code == 200
    assert at.get(f"Invoices/{invoice['id']}").json()["item"]["paidDate"] is None


def test_paid_date_null_ignored_with_the_switch(at, invoice):
    server, db = at.server, at.db
    control(server, "PATCH", f"databases/{db.ci}/switches", {"paid_date_null": "ignore"})
    at.patch("Invoices", {"id": invoice["id"], "paidDate": "2025-10-01"})
    response = at.patch("Invoices", {"id": invoice["id"], "paidDate": None, "invoiceNumber": "N"})
    assert response.status_code == 200 and response.json() == {"itemId": invoice["id"]}
    stored = at.get(f"Invoices/{invoice['id']}").json()["item"]
    assert stored["paidDate"] == "2025-10-01T00:00:00.000Z" and stored["invoiceNumber"] == "N"
    # A PUT's implied null too.
    at.session.put(at.url("Invoices"), json={"id": invoice["id"], "invoiceNumber": "M"})
    assert db.get_invoice(invoice["id"])["paidDate"] == "2025-10-01T00:00:00.000Z"
    # The Autotask UI (control surface) still clears it.
    path = f"databases/{db.ci}/invoices/{invoice['id']}"
    assert control(server, "PATCH", path, {"paidDate": None})[1]["item"]["paidDate"] is None


@pytest.mark.parametrize(
    ("mode", "written", "stored"),
    [
        ("date", "2025-10-01T23:30:00-05:00", "2025-10-01T00:00:00.000Z"),
        ("date", "2025-10-01T18:30:00Z", "2025-10-01T00:00:00.000Z"),
        ("utc_date", "2025-10-01T23:30:00-05:00", "2025-10-02T00:00:00.000Z"),
        ("utc_date", "2025-10-01", "2025-10-01T00:00:00.000Z"),
        ("local_date", "2025-10-01T00:00:00Z", "2025-09-30T00:00:00.000Z"),
        ("local_date", "2025-10-01T12:00:00Z", "2025-10-01T00:00:00.000Z"),
        ("keep_time", "2025-10-01T18:30:00.5Z", "2025-10-01T18:30:00.500Z"),
        ("keep_time", "2025-10-01T23:30:00-05:00", "2025-10-02T04:30:00.000Z"),
    ],
)
def test_how_a_date_time_paid_date_is_stored(at, invoice, mode, written, stored):
    control(at.server, "PATCH", f"databases/{at.db.ci}/switches", {"paid_date_time": mode})
    assert at.patch("Invoices", {"id": invoice["id"], "paidDate": written}).status_code == 200
    assert at.get(f"Invoices/{invoice['id']}").json()["item"]["paidDate"] == stored
    bad = at.patch("Invoices", {"id": invoice["id"], "paidDate": "soon"})
    assert bad.status_code == 500 and "paidDate" in bad.json()["errors"][0]


def test_local_date_uses_the_tenant_offset(at, invoice):
    at.db.set_switches(paid_date_time="local_date", tenant_utc_offset_hours=10)
    at.patch("Invoices", {"id": invoice["id"], "paidDate": "2025-10-01T20:00:00Z"})
    assert at.db.get_invoice(invoice["id"])["paidDate"] == "2025-10-02T00:00:00.000Z"


# -- an invoice whose PDF fails ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "error_body", "empty", "not_pdf"])
def test_one_invoice_pdf_fails(at, kind):
    server, db = at.server, at.db
    bad, good = db.invoices()[:2]
    path = f"databases/{db.ci}/invoices/{bad['id']}/pdf-failure"
    status, data = control(server, "PUT", path, {"kind": kind})
    assert status == 200 and data == {"invoice": bad["id"], "kind": kind}
    assert control(server, "GET", f"databases/{db.ci}")[1]["pdfFailures"] == {str(bad["id"]): kind}
    response = at.get(f"Invoices/{bad['id']}/InvoicePDF")
    if kind == "500":
        assert response.status_code == 500 and "PDF" in response.json()["errors"][0]
    elif kind == "error_body":
        assert response.status_code == 200 and "PDF" in response.json()["errors"][0]
    else:
        payload = response.json()
        assert response.status_code == 200 and payload["id"] == bad["id"]
        data = base64.b64decode(payload["data"])
        assert payload["fileSize"] == len(data) and not data.startswith(b"%PDF-")
        assert (data == b"") == (kind == "empty")
    assert at.get(f"Invoices/{good['id']}/InvoicePDF").status_code == 200  # only that one
    assert control(server, "DELETE", path)[0] == 200
    healed = at.get(f"Invoices/{bad['id']}/InvoicePDF")
    assert healed.status_code == 200
    assert base64.b64decode(healed.json()["data"]).startswith(b"%PDF-")


def test_pdf_failure_refusals(at):
    server, db = at.server, at.db
    invoice = db.invoices()[0]["id"]
    path = f"databases/{db.ci}/invoices/{invoice}/pdf-failure"
    assert control(server, "PUT", path, {"kind": "slow"})[0] == 400
    assert control(server, "PUT", f"databases/{db.ci}/invoices/1/pdf-failure", {})[0] == 404
    assert control(server, "POST", path, {})[0] == 200  # default kind: 500
    assert at.get(f"Invoices/{invoice}/InvoicePDF").status_code == 500
    db.clear_invoice_pdf_failure()
    assert at.get(f"Invoices/{invoice}/InvoicePDF").status_code == 200
