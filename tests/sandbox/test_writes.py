"""PATCH/PUT on Invoices and Companies, refused writes, InvoicePDF (API.md §5)."""

import base64

import pytest

from tests.sandbox.conftest import AutotaskHttp


@pytest.fixture
def invoice(at):
    return next(i for i in at.db.invoices() if i["paidDate"] is None and not i["isVoided"])


def test_patch_paid_date_keeps_the_date_only(at, invoice):
    response = at.patch("Invoices", {"id": invoice["id"], "paidDate": "2025-10-01T18:30:00Z"})
    assert response.status_code == 200 and response.json() == {"itemId": invoice["id"]}
    stored = at.get(f"Invoices/{invoice['id']}").json()["item"]
    assert stored["paidDate"] == "2025-10-01T00:00:00.000Z"
    at.patch("Invoices", {"id": invoice["id"], "paidDate": None})
    assert at.db.get_invoice(invoice["id"])["paidDate"] is None
    [write] = [e for e in at.db.requests(method="PATCH") if e["body"]["paidDate"] is None]
    assert write["body"] == {"id": invoice["id"], "paidDate": None}
    assert write["entity"] == "Invoices" and write["status"] == 200
    assert "Secret" not in str(at.db.request_log)


def test_patch_web_service_date_and_number(at, invoice):
    body = {"id": invoice["id"], "webServiceDate": "2025-10-01T10:11:12.5Z", "invoiceNumber": "X-9"}
    assert at.patch("Invoices", body).status_code == 200
    stored = at.db.get_invoice(invoice["id"])
    assert stored["webServiceDate"] == "2025-10-01T10:11:12.500Z"
    assert stored["invoiceNumber"] == "X-9"


def test_read_only_field_is_refused_and_nothing_changes(at, invoice):
    response = at.patch(
        "Invoices", {"id": invoice["id"], "paidDate": "2025-10-01", "invoiceTotal": 1}
    )
    assert response.status_code == 500
    assert "invoiceTotal" in response.json()["errors"][0]
    assert at.db.get_invoice(invoice["id"]) == invoice


def test_put_clears_unspecified_writable_fields(at, invoice):
    at.db.update_invoice(invoice["id"], webServiceDate="2025-01-01")
    assert at.session.put(at.url("Invoices"), json={"id": invoice["id"], "invoiceNumber": "7"}).ok
    stored = at.db.get_invoice(invoice["id"])
    assert stored["invoiceNumber"] == "7" and stored["webServiceDate"] is None


def test_invoices_cannot_be_created_or_deleted(at, invoice):
    assert at.post("Invoices", {"companyID": invoice["companyID"]}).status_code == 405
    assert at.session.delete(at.url(f"Invoices/{invoice['id']}")).status_code == 405
    assert at.db.get_invoice(invoice["id"]) == invoice
    assert len(at.db.invoices()) == 40


def test_patch_unknown_invoice_is_500(at):
    response = at.patch("Invoices", {"id": 1, "paidDate": "2025-10-01"})
    assert response.status_code == 500 and "No matching records" in response.json()["errors"][0]


def test_patch_company(at):
    company = at.db.companies()[0]
    body = {
        "id": company["id"],
        "phone": "555-0199",
        "userDefinedFields": [{"name": "Customer Ranking", "value": "Golden"}],
    }
    assert at.patch("Companies", body).json() == {"itemId": company["id"]}
    stored = at.db.get_company(company["id"])
    assert stored["phone"] == "555-0199"
    assert {"name": "Customer Ranking", "value": "Golden"} in stored["userDefinedFields"]
    assert stored["lastTrackedModifiedDateTime"] > company["lastTrackedModifiedDateTime"]


def test_get_missing_item_404_or_null(at):
    assert at.get("Invoices/1").status_code == 404
    at.db.set_switches(missing_item="null")
    response = at.get("Invoices/1")
    assert response.status_code == 200 and response.json() == {"item": None}


def test_invoice_pdf_is_a_real_pdf_with_number_customer_lines_and_total(at, invoice):
    response = at.get(f"Invoices/{invoice['id']}/InvoicePdf")
    assert response.status_code == 200
    payload = response.json()
    pdf = base64.b64decode(payload["data"])
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-10:]
    assert payload["id"] == invoice["id"]
    assert payload["contentType"] == "application/pdf"
    assert payload["fileName"] == f"Invoice-{invoice['invoiceNumber']}.pdf"
    assert payload["fileSize"] == len(pdf)
    company = at.db.get_company(invoice["companyID"])
    assert f"Invoice {invoice['invoiceNumber']}".encode() in pdf
    assert company["companyName"].replace("(", "\\(").replace(")", "\\)").encode() in pdf
    assert f"{invoice['invoiceTotal']:.2f}".encode() in pdf
    for line in at.db.invoice_lines(invoice["id"]):
        assert f"{line['extendedPrice']:.2f}".encode() in pdf


def test_invoice_pdf_wrapped_switch_and_missing_invoice(at, invoice):
    at.db.set_switches(pdf_wrapped=True)
    item = at.get(f"Invoices/{invoice['id']}/InvoicePDF").json()["item"]
    assert base64.b64decode(item["data"]).startswith(b"%PDF-")
    assert at.get("Invoices/1/InvoicePDF").status_code == 404


def test_entity_information_fields(at):
    fields = {f["name"]: f for f in at.get("Invoices/entityInformation/fields").json()["fields"]}
    assert fields["dueDate"]["isQueryable"] is False
    assert fields["paidDate"]["isReadOnly"] is False and fields["invoiceTotal"]["isReadOnly"]
    terms = {int(p["value"]): p["label"] for p in fields["paymentTerm"]["picklistValues"]}
    api_terms = at.query("PaymentTerms", {"op": "exist", "field": "id"}).json()["items"]
    assert terms == {t["id"]: t["name"] for t in api_terms}
    company_fields = at.get("Companies/entityInformation/fields").json()["fields"]
    company_type = next(f for f in company_fields if f["name"] == "companyType")
    assert {int(p["value"]): p["label"] for p in company_type["picklistValues"]} == {
        1: "Customer",
        2: "Lead",
        3: "Prospect",
        4: "Dead",
        6: "Cancellation",
        7: "Vendor",
        8: "Partner",
    }
    info = at.get("Invoices/entityInformation").json()["info"]
    assert info["canCreate"] is False and info["canUpdate"] is True and info["canDelete"] is False
    udfs = at.get("Companies/entityInformation/userDefinedFields").json()["fields"]
    assert {u["name"] for u in udfs} == {"Customer Ranking", "Payment Portal"}


def test_billing_items_are_the_invoice_lines(make_sandbox):
    server = make_sandbox(companies=5, invoices=60)
    at = AutotaskHttp(server, server.db)
    for invoice in server.db.invoices()[:20]:
        lines = at.query("BillingItems", {"op": "eq", "field": "invoiceID", "value": invoice["id"]})
        items = lines.json()["items"]
        assert items
        assert round(sum(i["totalAmount"] for i in items), 2) == round(invoice["invoiceTotal"], 2)
        assert round(sum(i["taxDollars"] for i in items), 2) == round(invoice["totalTaxValue"], 2)
