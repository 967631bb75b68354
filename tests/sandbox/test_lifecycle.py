"""Autotask's invoice lifecycle (API.md §10), over HTTP: ids never come back, posted invoices
are voided and re-issued rather than edited or deleted, credits land on the next invoice. Each
old behaviour is still there behind its switch."""

import pytest

from tests.sandbox.conftest import AutotaskHttp, control


@pytest.fixture
def open_invoice(at):
    return next(i for i in at.db.invoices() if i["paidDate"] is None and not i["isVoided"])


def lines_of(at, invoice_id):
    response = at.query("BillingItems", {"op": "eq", "field": "invoiceID", "value": invoice_id})
    assert response.status_code == 200, response.text
    return response.json()["items"]


# -- ids ---------------------------------------------------------------------------------------


def test_a_deleted_company_id_never_comes_back(at):
    server, db = at.server, at.db
    base = f"databases/{db.ci}/companies"
    first = control(server, "POST", base, {"companyName": "Short Lived"})[1]["item"]["id"]
    assert control(server, "DELETE", f"{base}/{first}")[0] == 200
    second = control(server, "POST", base, {"companyName": "Newcomer"})[1]["item"]["id"]
    assert second > first
    assert at.get(f"Companies/{first}").status_code == 404
    # Through the API too.
    created = at.post("Companies", {"companyName": "Via API", "companyType": 1,
                                    "phone": "555-0100", "ownerResourceID": 29682885})  # fmt: skip
    assert created.status_code == 200 and created.json()["itemId"] > second


def test_a_deleted_invoice_id_never_comes_back(at):
    db = at.db
    db.set_switches(invoice_delete=True)  # the legacy delete, to make a hole at the top
    company = db.customers()[0]["id"]
    newest = db.create_invoice(company)
    line_ids = [line["id"] for line in db.invoice_lines(newest["id"])]
    db.delete_invoice(newest["id"])
    again = db.create_invoice(company)
    assert again["id"] > newest["id"]
    assert min(line["id"] for line in db.invoice_lines(again["id"])) > max(line_ids)
    assert at.get(f"Invoices/{newest['id']}").status_code == 404


def test_legacy_switch_reuses_ids(at):
    server, db = at.server, at.db
    status, data = control(server, "PATCH", f"databases/{db.ci}/switches", {"reuse_ids": True})
    assert status == 200 and data["reuse_ids"] is True
    base = f"databases/{db.ci}/companies"
    first = control(server, "POST", base, {"companyName": "Short Lived"})[1]["item"]["id"]
    control(server, "DELETE", f"{base}/{first}")
    assert control(server, "POST", base, {"companyName": "Same Id"})[1]["item"]["id"] == first


# -- void and re-issue -------------------------------------------------------------------------


def test_reissue_voids_and_creates_a_replacement(at, open_invoice):
    server, db = at.server, at.db
    old_lines = lines_of(at, open_invoice["id"])
    before = at.get(f"Invoices/{open_invoice['id']}").json()["item"]
    status, data = control(
        server,
        "POST",
        f"databases/{db.ci}/invoices/{open_invoice['id']}/reissue",
        {"invoiceTotal": round(open_invoice["invoiceTotal"] + 40.5, 2), "dueDate": "2031-01-15"},
    )
    assert status == 200, data
    assert set(data) == {"voided_id", "new_id"} and data["voided_id"] == open_invoice["id"]
    assert data["new_id"] > max(i["id"] for i in db.invoices() if i["id"] != data["new_id"])

    voided = at.get(f"Invoices/{open_invoice['id']}").json()["item"]
    assert voided["isVoided"] is True and voided["voidedDate"].endswith("Z")
    assert voided["invoiceTotal"] == before["invoiceTotal"]  # the old invoice is not edited

    new = at.get(f"Invoices/{data['new_id']}").json()["item"]
    assert new["companyID"] == open_invoice["companyID"]
    assert new["invoiceNumber"] and new["invoiceNumber"] != open_invoice["invoiceNumber"]
    assert new["createDateTime"] > open_invoice["createDateTime"]
    assert new["isVoided"] is False and new["paidDate"] is None and new["voidedDate"] is None
    assert new["invoiceTotal"] == round(open_invoice["invoiceTotal"] + 40.5, 2)
    assert new["dueDate"] == "2031-01-15T00:00:00.000Z"
    assert new["invoiceDateTime"] == open_invoice["invoiceDateTime"]
    # The items went back to be invoiced again: on the replacement, with an adjustment line.
    moved = lines_of(at, data["new_id"])
    assert {line["id"] for line in old_lines} < {line["id"] for line in moved}
    assert round(sum(line["totalAmount"] for line in moved), 2) == new["invoiceTotal"]
    assert lines_of(at, open_invoice["id"]) == []
    # A client polling for new invoices sees the replacement.
    since = {"op": "gte", "field": "createDateTime", "value": new["createDateTime"]}
    assert data["new_id"] in at.ids("Invoices", since)


def test_reissue_without_changes_keeps_total_and_due_date(at, open_invoice):
    server, db = at.server, at.db
    path = f"databases/{db.ci}/invoices/{open_invoice['id']}/reissue"
    status, data = control(server, "POST", path)
    assert status == 200
    new = db.get_invoice(data["new_id"])
    assert new["invoiceTotal"] == open_invoice["invoiceTotal"]
    assert new["dueDate"] == open_invoice["dueDate"]
    assert new["totalTaxValue"] == open_invoice["totalTaxValue"]
    # Once voided, it cannot be re-issued again; unknown ids are 404; bad bodies 400.
    assert control(server, "POST", path)[0] == 400
    assert control(server, "POST", f"databases/{db.ci}/invoices/1/reissue")[0] == 404
    other = f"databases/{db.ci}/invoices/{data['new_id']}/reissue"
    assert control(server, "POST", other, {"total": 5})[0] == 400
    assert control(server, "POST", other, {"invoiceTotal": "5"})[0] == 400


# -- posted invoices are not edited or deleted ------------------------------------------------


def test_posted_invoice_is_not_edited_in_place(at, open_invoice):
    server, db = at.server, at.db
    path = f"databases/{db.ci}/invoices/{open_invoice['id']}"
    for change in ({"invoiceTotal": 1.0}, {"dueDate": "2031-01-01"}, {"paymentTerm": 2}):
        status, data = control(server, "PATCH", path, change)
        assert status == 400 and "reissue" in data["error"]
    assert db.get_invoice(open_invoice["id"]) == open_invoice
    with pytest.raises(ValueError, match="invoice_edit_in_place"):
        db.set_invoice_total(open_invoice["id"], 5)
    # What the Autotask UI does change on a posted invoice still works.
    status, data = control(server, "PATCH", path, {"paidDate": "2030-01-02", "comments": "x"})
    assert status == 200 and data["item"]["paidDate"] == "2030-01-02T00:00:00.000Z"
    status, data = control(server, "PATCH", path, {"paidDate": None, "invoiceNumber": "R-1"})
    assert status == 200 and data["item"]["paidDate"] is None


def test_legacy_switch_edits_in_place(at, open_invoice):
    server, db = at.server, at.db
    control(server, "PATCH", f"databases/{db.ci}/switches", {"invoice_edit_in_place": True})
    path = f"databases/{db.ci}/invoices/{open_invoice['id']}"
    status, _ = control(server, "PATCH", path, {"invoiceTotal": 12.5, "dueDate": "2031-02-03"})
    assert status == 200
    stored = at.get(f"Invoices/{open_invoice['id']}").json()["item"]
    assert stored["invoiceTotal"] == 12.5 and stored["dueDate"] == "2031-02-03T00:00:00.000Z"
    assert stored["id"] == open_invoice["id"] and stored["isVoided"] is False


def test_invoices_cannot_be_deleted_unless_the_legacy_switch_is_on(at, open_invoice):
    server, db = at.server, at.db
    path = f"databases/{db.ci}/invoices/{open_invoice['id']}"
    status, data = control(server, "DELETE", path)
    assert status == 400 and "void" in data["error"]
    assert at.get(f"Invoices/{open_invoice['id']}").status_code == 200
    control(server, "PATCH", f"databases/{db.ci}/switches", {"invoice_delete": True})
    assert control(server, "DELETE", path)[0] == 200
    assert at.get(f"Invoices/{open_invoice['id']}").status_code == 404
    assert lines_of(at, open_invoice["id"]) == []


# -- credits -----------------------------------------------------------------------------------


def test_credit_lands_on_the_next_invoice_of_the_company(at, open_invoice):
    server, db = at.server, at.db
    company = open_invoice["companyID"]
    before = {i["id"]: i["invoiceTotal"] for i in db.invoices()}
    path = f"databases/{db.ci}/companies/{company}/credits"
    status, data = control(server, "POST", path, {"amount": 25, "description": "Outage"})
    assert status == 200, data
    credit = data["item"]
    assert credit["invoiceID"] is None and credit["totalAmount"] == -25.0
    assert [c["id"] for c in data["pending"]] == [credit["id"]]
    control(server, "POST", path, {"amount": 10.5})
    assert len(control(server, "GET", path)[1]["pending"]) == 2
    # A pending credit is a billing item not on an invoice yet; no invoice has changed.
    not_invoiced = at.ids("BillingItems", {"op": "notExist", "field": "invoiceID"})
    assert credit["id"] in not_invoiced
    assert {i["id"]: i["invoiceTotal"] for i in db.invoices()} == before

    status, data = control(
        server,
        "POST",
        f"databases/{db.ci}/invoices",
        {"companyID": company, "lines": [{"quantity": 2, "rate": 100}]},
    )
    invoice = at.get(f"Invoices/{data['item']['id']}").json()["item"]
    assert invoice["invoiceTotal"] == 200 - 25 - 10.5
    lines = lines_of(at, invoice["id"])
    assert sorted(line["totalAmount"] for line in lines) == [-25.0, -10.5, 200.0]
    assert credit["id"] in {line["id"] for line in lines}
    assert control(server, "GET", path)[1]["pending"] == []
    # Consumed: the invoice after that is whole again.
    _, data = control(server, "POST", f"databases/{db.ci}/invoices", {"companyID": company})
    assert data["item"]["invoiceTotal"] == 100.0


def test_credit_lands_on_a_replacement_invoice_too(at, open_invoice):
    db = at.db
    db.add_company_credit(open_invoice["companyID"], 20)
    new_id = db.reissue_invoice(open_invoice["id"])["new_id"]
    assert db.get_invoice(new_id)["invoiceTotal"] == round(open_invoice["invoiceTotal"] - 20, 4)
    assert db.pending_credits(open_invoice["companyID"]) == []


def test_credit_refusals(at):
    server, db = at.server, at.db
    company = db.customers()[0]["id"]
    path = f"databases/{db.ci}/companies/{company}/credits"
    assert control(server, "POST", path, {"amount": 0})[0] == 400
    assert control(server, "POST", path, {"amount": -5})[0] == 400
    assert control(server, "POST", path, {})[0] == 400
    assert (
        control(server, "POST", f"databases/{db.ci}/companies/1/credits", {"amount": 5})[0] == 404
    )
    assert (
        control(server, "POST", f"databases/{db.ci}/companies/0/credits", {"amount": 5})[0] == 400
    )


def test_credit_in_place_only_with_the_legacy_switch(at, open_invoice):
    server, db = at.server, at.db
    path = f"databases/{db.ci}/invoices/{open_invoice['id']}/credits"
    status, data = control(server, "POST", path, {"amount": 20})
    assert status == 400 and "next invoice" in data["error"]
    assert db.get_invoice(open_invoice["id"]) == open_invoice
    control(server, "PATCH", f"databases/{db.ci}/switches", {"credit_in_place": True})
    status, data = control(server, "POST", path, {"amount": 20})
    assert status == 200 and data["item"]["invoiceID"] == open_invoice["id"]
    stored = AutotaskHttp(server, db).get(f"Invoices/{open_invoice['id']}").json()["item"]
    assert stored["invoiceTotal"] == round(open_invoice["invoiceTotal"] - 20, 4)
