"""Paging, page size and IncludeFields (API.md §3.3)."""

import json
from urllib.parse import parse_qs, urlsplit

import requests

from tests.sandbox.conftest import AutotaskHttp

ALL = {"op": "exist", "field": "id"}


def test_post_paging_walks_every_invoice_in_ascending_id_order(make_sandbox):
    server = make_sandbox(companies=10, invoices=1234)
    at = AutotaskHttp(server, server.db)
    body = {"filter": [ALL]}
    response = at.post("Invoices/query", body)
    seen, pages = [], 0
    while True:
        assert response.status_code == 200, response.text
        data = response.json()
        pages += 1
        seen += [item["id"] for item in data["items"]]
        assert data["pageDetails"]["count"] == len(data["items"])
        assert data["pageDetails"]["requestCount"] == 500
        if pages > 1:
            assert data["pageDetails"]["prevPageUrl"].startswith(at.zone)
        else:
            assert data["pageDetails"]["prevPageUrl"] is None
        next_url = data["pageDetails"]["nextPageUrl"]
        if next_url is None:
            break
        assert next_url.startswith(at.zone) and "/query/next?paging=" in next_url
        response = at.session.post(next_url, json=body)
    assert pages == 3
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 1234
    assert seen == [inv["id"] for inv in server.db.invoices()]


def test_get_search_paging_uses_get_urls(make_sandbox):
    server = make_sandbox(companies=10, invoices=700)
    at = AutotaskHttp(server, server.db)
    search = json.dumps({"filter": [ALL], "MaxRecords": 300})
    response = at.get("Invoices/query", params={"search": search})
    seen = []
    while True:
        assert response.status_code == 200, response.text
        data = response.json()
        seen += [i["id"] for i in data["items"]]
        next_url = data["pageDetails"]["nextPageUrl"]
        if not next_url:
            break
        assert json.loads(parse_qs(urlsplit(next_url).query)["search"][0]) == json.loads(search)
        response = at.session.get(next_url)
    assert len(seen) == 700 and seen == sorted(seen)


def test_get_on_query_next_is_405_with_the_aspnet_body(make_sandbox):
    server = make_sandbox(companies=5, invoices=600)
    at = AutotaskHttp(server, server.db)
    next_url = at.post("Invoices/query", {"filter": [ALL]}).json()["pageDetails"]["nextPageUrl"]
    response = at.session.get(next_url)
    assert response.status_code == 405
    assert response.json() == {
        "Message": "The requested resource does not support http method 'GET'."
    }


def test_next_page_with_a_different_body_is_refused(make_sandbox):
    server = make_sandbox(companies=5, invoices=600)
    at = AutotaskHttp(server, server.db)
    next_url = at.post("Invoices/query", {"filter": [ALL]}).json()["pageDetails"]["nextPageUrl"]
    other = {"filter": [{"op": "gt", "field": "id", "value": 0}]}
    response = at.session.post(next_url, json=other)
    assert response.status_code == 500
    assert "errors" in response.json()


def test_max_records_over_500_is_an_error_and_small_pages_work(at):
    assert at.post("Invoices/query", {"filter": [ALL], "MaxRecords": 501}).status_code == 500
    response = at.post("Invoices/query", {"filter": [ALL], "maxRecords": 7})
    assert response.json()["pageDetails"]["requestCount"] == 7
    assert len(response.json()["items"]) == 7


def test_include_fields_returns_id_the_fields_and_empty_udfs(at):
    body = {"Filter": [ALL], "IncludeFields": ["invoiceNumber", "companyID"]}
    items = at.post("Invoices/query", body).json()["items"]
    assert set(items[0]) == {"id", "invoiceNumber", "companyID", "userDefinedFields"}
    assert items[0]["userDefinedFields"] == []


def test_count_by_post_and_get(at):
    body = {"filter": [{"op": "eq", "field": "isVoided", "value": False}]}
    expected = sum(1 for i in at.db.invoices() if not i["isVoided"])
    assert at.post("Invoices/query/count", body).json() == {"queryCount": expected}
    response = at.get("Invoices/query/count", params={"search": json.dumps(body)})
    assert response.json() == {"queryCount": expected}


def test_paths_are_case_insensitive(at):
    invoice_id = at.db.invoices()[0]["id"]
    lower = at.zone.replace("ATServicesRest", "atservicesrest") + f"v1.0/invoices/{invoice_id}"
    response = at.session.get(lower)
    assert response.status_code == 200 and response.json()["item"]["id"] == invoice_id
    assert isinstance(
        requests.get(at.server.base_url + "/ATServicesRest/versioninformation").json()[
            "apiVersions"
        ],
        list,
    )


def test_page_bytes_from_cached_rows_equal_rendering_each_row_and_follow_updates(at):
    from sandbox import query, wire

    db = at.db
    first = at.query("Invoices", {"op": "gt", "field": "id", "value": 0}, MaxRecords=50)
    assert first.status_code == 200
    table = db.table("Invoices")
    _, rows = table.snapshot()
    expected = wire.dumps(query.render(rows[:50], table.entity, None))
    assert first.content.startswith(b'{"items":' + expected + b',"pageDetails":')
    assert first.json()["pageDetails"]["count"] == len(rows[:50]) > 3
    # A change in Autotask is a new row: the next answer shows it, never the cached JSON.
    target = first.json()["items"][3]["id"]
    assert at.patch("Invoices", {"id": target, "paidDate": None}).status_code == 200
    again = at.query("Invoices", {"op": "eq", "field": "id", "value": target})
    assert again.json()["items"][0]["paidDate"] is None
    row = dict(zip(table.entity.names, table.get(target), strict=True))
    assert again.json()["items"][0] == json.loads(wire.dumps(row))


def test_a_warmed_database_answers_pages_from_the_cache_with_the_same_bytes(make_sandbox):
    server = make_sandbox(companies=30, invoices=600)
    db = server.db
    at = AutotaskHttp(server, db)
    cold = at.query("Invoices", ALL).content
    table = db.table("Invoices")
    table._json.clear()
    db.warm()
    assert len(table._json) == len(table)  # every row rendered once
    warm = at.query("Invoices", ALL).content
    assert warm == cold
