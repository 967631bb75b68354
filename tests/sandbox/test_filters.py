"""Filter operators and query validation (API.md §3.2)."""

import pytest

from tests.sandbox.conftest import AutotaskHttp


def _f(op, field, value=None, **extra):
    item = {"op": op, "field": field, **extra}
    if value is not None:
        item["value"] = value
    return item


@pytest.fixture
def data(at):
    return at.db.invoices()


def expect(at, data, predicate, *filters):
    assert at.ids("Invoices", *filters) == [i["id"] for i in data if predicate(i)]


def test_comparison_operators(at, data):
    pivot = data[len(data) // 2]
    total = pivot["invoiceTotal"]
    expect(
        at,
        data,
        lambda i: i["companyID"] == pivot["companyID"],
        _f("eq", "companyID", pivot["companyID"]),
    )
    expect(
        at,
        data,
        lambda i: i["companyID"] != pivot["companyID"],
        _f("noteq", "companyID", pivot["companyID"]),
    )
    expect(at, data, lambda i: i["invoiceTotal"] > total, _f("gt", "invoiceTotal", total))
    expect(at, data, lambda i: i["invoiceTotal"] >= total, _f("gte", "invoiceTotal", total))
    expect(at, data, lambda i: i["invoiceTotal"] < total, _f("lt", "invoiceTotal", total))
    expect(at, data, lambda i: i["invoiceTotal"] <= total, _f("lte", "invoiceTotal", total))


def test_dates_compare_as_instants_whatever_format_the_client_sends(at, data):
    pivot = data[len(data) // 2]["createDateTime"]
    day = pivot[:10]
    expect(at, data, lambda i: i["createDateTime"] >= pivot, _f("gte", "createDateTime", pivot))
    expect(
        at,
        data,
        lambda i: i["invoiceDateTime"][:10] >= day,
        _f("gte", "invoiceDateTime", day),
    )
    expect(
        at,
        data,
        lambda i: i["createDateTime"] < f"{day}T00:00:00.000Z",
        _f("lt", "createDateTime", f"{day}T00:00:00.000000Z"),
    )


def test_string_operators_ignore_case(at):
    companies = at.db.companies()
    name = companies[0]["companyName"]
    ids = lambda pred: [c["id"] for c in companies if pred(c["companyName"].lower())]  # noqa: E731
    assert at.ids("Companies", _f("beginsWith", "companyName", name[:5].upper())) == ids(
        lambda n: n.startswith(name[:5].lower())
    )
    assert at.ids("Companies", _f("endsWith", "companyName", name[-4:])) == ids(
        lambda n: n.endswith(name[-4:].lower())
    )
    assert at.ids("Companies", _f("contains", "companyName", "a")) == ids(lambda n: "a" in n)
    assert at.ids("Companies", _f("eq", "companyName", name.upper())) == ids(
        lambda n: n == name.lower()
    )


def test_exist_and_not_exist(at, data):
    expect(at, data, lambda i: i["paidDate"] is not None, _f("exist", "paidDate"))
    expect(at, data, lambda i: i["paidDate"] is None, _f("notExist", "paidDate"))


def test_in_and_not_in(at, data):
    wanted = [data[0]["id"], data[3]["id"], 999_999]
    expect(at, data, lambda i: i["id"] in wanted, _f("in", "id", wanted))
    expect(at, data, lambda i: i["id"] not in wanted, _f("notIn", "id", wanted))


def test_nested_groups_and_top_level_and(at, data):
    filters = [
        _f("eq", "isVoided", False),
        {
            "op": "or",
            "items": [
                _f("notExist", "paidDate"),
                {"op": "and", "items": [_f("eq", "paymentTerm", 1), _f("gt", "invoiceTotal", 500)]},
            ],
        },
    ]
    expect(
        at,
        data,
        lambda i: (
            not i["isVoided"]
            and (i["paidDate"] is None or (i["paymentTerm"] == 1 and i["invoiceTotal"] > 500))
        ),
        *filters,
    )


def test_keys_are_case_insensitive(at, data):
    body = {"Filter": [{"Op": "EQ", "Field": "ISVOIDED", "Value": True}], "MaxRecords": 500}
    response = at.post("Invoices/query", body)
    assert [i["id"] for i in response.json()["items"]] == [i["id"] for i in data if i["isVoided"]]


def _error(response):
    assert response.status_code == 500, response.text
    return response.json()["errors"][0]


def test_more_than_500_or_conditions_is_refused(at):
    assert at.query("Invoices", _f("in", "id", list(range(500)))).status_code == 200
    message = _error(at.query("Invoices", _f("in", "id", list(range(501)))))
    assert message == "Invalid query syntax. Queries are limited to 500 or fewer 'OR' conditions."


def test_due_date_is_not_queryable(at):
    assert "dueDate" in _error(at.query("Invoices", _f("gt", "dueDate", "2025-01-01")))


def test_boolean_fields_need_json_booleans(at):
    for value in ("true", 1, "False"):
        assert "isVoided" in _error(at.query("Invoices", _f("eq", "isVoided", value)))
    assert "isVoided" in _error(
        at.query("Invoices", {"op": "eq", "field": "isVoided", "value": None})
    )


def test_unknown_field(at):
    assert (
        _error(at.query("Companies", _f("eq", "limit", 5)))
        == "Unable to find limit in the Companies"
    )


def test_one_udf_per_query(at):
    companies = at.db.companies()
    golden = [
        c["id"]
        for c in companies
        if any(
            u["name"] == "Customer Ranking" and u["value"] == "Golden"
            for u in c["userDefinedFields"]
        )
    ]
    udf = _f("eq", "Customer Ranking", "golden", udf=True)
    assert at.ids("Companies", udf) == golden
    second = _f("exist", "Payment Portal", udf=True)
    assert "one user-defined field" in _error(at.query("Companies", udf, second))


def test_empty_filter_switch(at, data):
    assert len(at.post("Invoices/query", {"filter": []}).json()["items"]) == len(data)
    at.db.set_switches(empty_filter="error")
    assert _error(at.post("Invoices/query", {"filter": []}))


def test_contacts_is_active_is_an_integer(at):
    items = at.query("Contacts", _f("eq", "isActive", 1)).json()["items"]
    assert items and all(item["isActive"] == 1 for item in items)


def test_id_gt_paging_idiom(make_sandbox):
    server = make_sandbox(companies=5, invoices=1100)
    at = AutotaskHttp(server, server.db)
    last, seen = 0, []
    while True:
        items = at.query("Invoices", _f("gt", "id", last)).json()["items"]
        if not items:
            break
        seen += [i["id"] for i in items]
        last = items[-1]["id"]
    assert seen == [i["id"] for i in server.db.invoices()]
