"""What belongs to one tenant (API.md §10): company 0, its currencies, its company types."""

import base64

from sandbox.state import SandboxDatabase
from tests.sandbox.conftest import AutotaskHttp, control

THREE_IS_CUSTOMER = {
    1: "Lead",
    2: "Prospect",
    3: "Customer",
    4: "Dead",
    6: "Cancellation",
    7: "Vendor",
    8: "Partner",
}


def picklist(at, entity="Companies", field="companyType"):
    fields = at.get(f"{entity}/entityInformation/fields").json()["fields"]
    values = next(f for f in fields if f["name"] == field)["picklistValues"]
    return {int(v["value"]): v["label"] for v in values}


# -- company 0 ---------------------------------------------------------------------------------


def test_company_zero_is_the_tenants_own_company(at):
    db = at.db
    response = at.get("Companies/0")
    assert response.status_code == 200
    own = response.json()["item"]
    assert own["id"] == 0 and db.username in own["companyName"]
    assert own["isActive"] is True and own["companyType"] == 1  # the tenant's Customer value
    assert at.ids("Companies", {"op": "lt", "field": "id", "value": 100}) == [0]
    assert at.ids("Companies", {"op": "exist", "field": "id"})[0] == 0
    assert 0 not in {c["id"] for c in db.customers()}


def test_company_zero_cannot_be_deleted_inactivated_or_invoiced(at):
    server, db = at.server, at.db
    status, data = control(server, "DELETE", f"databases/{db.ci}/companies/0")
    assert status == 400 and "own company" in data["error"]
    response = at.patch("Companies", {"id": 0, "isActive": False})
    assert response.status_code == 500 and "inactivated" in response.json()["errors"][0]
    assert control(server, "PATCH", f"databases/{db.ci}/companies/0", {"isActive": False})[0] == 400
    assert at.patch("Companies", {"id": 0, "phone": "555-0000"}).status_code == 200
    assert control(server, "POST", f"databases/{db.ci}/invoices", {"companyID": 0})[0] == 400
    assert at.get("Companies/0").json()["item"]["isActive"] is True


def test_legacy_switch_removes_company_zero(at, make_sandbox):
    server, db = at.server, at.db
    at.patch("Companies", {"id": 0, "phone": "555-0001"})
    control(server, "PATCH", f"databases/{db.ci}/switches", {"own_company": False})
    assert at.get("Companies/0").status_code == 404
    assert 0 not in at.ids("Companies", {"op": "exist", "field": "id"})
    control(server, "PATCH", f"databases/{db.ci}/switches", {"own_company": True})
    assert at.get("Companies/0").json()["item"]["phone"] == "555-0001"  # as it was
    # From the start, and with other fields.
    other = make_sandbox(invoices=5, switches={"own_company": False})
    assert other.db.get_company(0) is None
    named = make_sandbox(invoices=5, own_company={"companyName": "Acme IT", "companyType": 8})
    assert named.db.get_company(0)["companyName"] == "Acme IT"
    assert named.db.get_company(0)["companyType"] == 8


# -- currencies --------------------------------------------------------------------------------


def test_default_database_has_one_currency_usd(at):
    response = at.query("Currencies", {"op": "exist", "field": "id"})
    assert response.status_code == 200
    [usd] = response.json()["items"]
    assert usd["id"] == 1 and usd["name"] == "USD" and usd["isActive"] is True
    assert usd["isInternalCurrency"] is True and usd["exchangeRate"] == 1.0
    assert at.get("Currencies/1").json()["item"] == usd
    assert at.get("Currencies/entityInformation").json()["info"]["canQuery"] is True
    names = {f["name"] for f in at.get("Currencies/entityInformation/fields").json()["fields"]}
    assert {"id", "name", "description", "exchangeRate", "isActive", "isInternalCurrency"} <= names
    assert {c["currencyID"] for c in at.db.companies()} == {1}


def test_a_database_with_several_currencies_keeps_its_figures(make_sandbox):
    usd = make_sandbox(companies=8, invoices=40, seed=4).db
    server = make_sandbox(
        companies=8, invoices=40, seed=4, username="eu@x.test", currencies=["USD", "EUR"]
    )
    at = AutotaskHttp(server, server.db)
    currencies = {c["name"]: c for c in at.query("Currencies").json()["items"]}
    assert set(currencies) == {"USD", "EUR"}
    assert currencies["EUR"]["isInternalCurrency"] is False
    companies = at.query("Companies", {"op": "gt", "field": "id", "value": 0}).json()["items"]
    assert {c["currencyID"] for c in companies} == {1, 2}
    eur = [c for c in companies if c["currencyID"] == currencies["EUR"]["id"]]
    assert eur and at.ids(
        "Companies", {"op": "eq", "field": "currencyID", "value": currencies["EUR"]["id"]}
    ) == [c["id"] for c in eur]
    # Same companies, same invoices, same figures: only the currency differs.
    assert [i["invoiceTotal"] for i in server.db.invoices()] == [
        i["invoiceTotal"] for i in usd.invoices()
    ]


def test_a_euro_tenant(make_sandbox):
    server = make_sandbox(companies=5, invoices=10, currencies=["EUR"])
    at = AutotaskHttp(server, server.db)
    [eur] = at.query("Currencies").json()["items"]
    assert eur["name"] == "EUR" and eur["isInternalCurrency"] and eur["exchangeRate"] == 1.0
    assert server.db.company_currency(server.db.customers()[0]["id"]) == "EUR"


def test_seed_a_euro_company_and_invoice_it(at):
    server, db = at.server, at.db
    status, data = control(
        server,
        "POST",
        f"databases/{db.ci}/companies",
        {"companyName": "Berlin GmbH", "currency": "EUR"},
    )
    assert status == 200
    company = at.get(f"Companies/{data['item']['id']}").json()["item"]
    eur = at.query("Currencies", {"op": "eq", "field": "name", "value": "EUR"}).json()["items"]
    assert company["currencyID"] == eur[0]["id"] != 1
    _, data = control(
        server,
        "POST",
        f"databases/{db.ci}/invoices",
        {"companyID": company["id"], "lines": [{"quantity": 1, "rate": 80}], "taxRate": 0.19},
    )
    invoice = at.get(f"Invoices/{data['item']['id']}").json()["item"]
    assert invoice["invoiceTotal"] == 95.2 and invoice["totalTaxValue"] == 15.2  # in EUR
    pdf = base64.b64decode(at.get(f"Invoices/{invoice['id']}/InvoicePDF").json()["data"])
    assert b"Total EUR" in pdf and b"95.20" in pdf
    # An existing company moves to another currency.
    other = db.customers()[0]["id"]
    path = f"databases/{db.ci}/companies/{other}"
    assert control(server, "PATCH", path, {"currency": "EUR"})[1]["item"]["currencyID"] == 2
    assert db.company_currency(other) == "EUR"
    # Currencies through the control surface.
    assert control(server, "POST", f"databases/{db.ci}/currencies", {"name": "gbp"})[1]["id"] == 3
    _, data = control(server, "GET", f"databases/{db.ci}/currencies")
    assert [c["name"] for c in data["currencies"]] == ["USD", "EUR", "GBP"]
    assert control(server, "POST", f"databases/{db.ci}/currencies", {"name": "EURO"})[0] == 400


def test_currency_update_through_the_api(at):
    assert at.patch("Currencies", {"id": 1, "exchangeRate": 1.0, "isActive": True}).ok
    assert at.get("Currencies/1").json()["item"]["lastModifiedDateTime"].endswith("Z")
    assert at.patch("Currencies", {"id": 1, "name": "EUR"}).status_code == 500  # read-only


# -- company types -----------------------------------------------------------------------------


def test_a_tenant_where_three_is_customer(make_sandbox):
    server = make_sandbox(companies=30, invoices=60, company_types=THREE_IS_CUSTOMER)
    at, db = AutotaskHttp(server, server.db), server.db
    assert picklist(at) == THREE_IS_CUSTOMER
    assert db.customer_type == 3
    # The invoiced companies are customers (or cancelled ones): 3s here, not 1s.
    invoiced = {i["companyID"] for i in db.invoices()}
    types = {c["id"]: c["companyType"] for c in db.companies()}
    assert {types[c] for c in invoiced} <= {3, 6} and 3 in {types[c] for c in invoiced}
    assert types[0] == 3
    customers = at.ids("Companies", {"op": "eq", "field": "companyType", "value": 3})
    assert set(customers) == {c["id"] for c in db.customers()} | {0}
    # Writes are checked against this tenant's values.
    company = db.customers()[0]["id"]
    assert at.patch("Companies", {"id": company, "companyType": 5}).status_code == 500
    assert at.patch("Companies", {"id": company, "companyType": 7}).status_code == 200
    created = db.create_company(companyName="Defaults To Customer")
    assert created["companyType"] == 3
    # Same seed, default tenant: the same companies, with the standard values.
    default = SandboxDatabase(companies=30, invoices=60)
    assert [c["id"] for c in default.companies()] == [c["id"] for c in db.companies()[:-1]]


def test_default_company_types_are_the_standard_ones(at):
    assert picklist(at) == {
        1: "Customer",
        2: "Lead",
        3: "Prospect",
        4: "Dead",
        6: "Cancellation",
        7: "Vendor",
        8: "Partner",
    }


def test_company_types_through_the_control_surface(at):
    server, db = at.server, at.db
    customers = [c["id"] for c in db.customers()]
    status, data = control(
        server,
        "PUT",
        f"databases/{db.ci}/company-types",
        {str(k): v for k, v in THREE_IS_CUSTOMER.items()},
    )
    assert status == 200 and data["companyTypes"]["3"] == "Customer"
    assert picklist(at) == THREE_IS_CUSTOMER
    assert at.ids("Companies", {"op": "eq", "field": "companyType", "value": 3}) == [0, *customers]
    _, data = control(server, "GET", f"databases/{db.ci}/company-types")
    assert data["companyTypes"]["1"] == "Lead"
    assert control(server, "GET", f"databases/{db.ci}")[1]["companyTypes"]["3"] == "Customer"
    assert control(server, "PUT", f"databases/{db.ci}/company-types", {"x": "Customer"})[0] == 400
