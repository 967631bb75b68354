"""GET query paging the way django-autotask 1.16 reads it (bench/companies_vs_django_autotask.py).

django-autotask builds `{AUTOTASK_SERVER_URL}v1.0/zoneInformation?user=…`, then
`{zone url}v1.0/Companies/query?search=<json>` with the JSON pasted into the URL unencoded
(requests percent-encodes spaces, quotes and braces), a JSON boolean for isActive, no
MaxRecords, a new connection per request (`requests.request`), and follows
`pageDetails.nextPageUrl` with GET. For company types it reads `picklistValues` of the
companyType field in `Companies/entityInformation/fields`.
"""

import json

import requests

ACTIVE = {"op": "eq", "field": "isActive", "value": True}


def _headers(db) -> dict:
    return {
        "Content-Type": "application/json",
        "UserName": db.username,
        "Secret": db.secret,
        "ApiIntegrationCode": db.integration_code,
    }


def _zone_url(server, db) -> str:
    # AUTOTASK_SERVER_URL is e.g. https://webservices2.autotask.net/atservicesrest/
    response = requests.get(
        f"{server.base_url}/atservicesrest/v1.0/zoneInformation?user={db.username}", timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["url"]


def test_unencoded_search_json_pages_every_active_company_with_get_next_urls(make_sandbox):
    server = make_sandbox(companies=1234, invoices=0)
    db = server.db
    server.db.reset_counters()
    base = f"{_zone_url(server, db)}v1.0/Companies/"
    search = json.dumps({"filter": [ACTIVE]})  # '{"filter": [{"op": "eq", ...}]}', spaces
    url, seen, pages = f"{base}query?search={search}", [], 0
    while url:
        response = requests.request("get", url, headers=_headers(db), timeout=10)
        assert response.status_code == 200, response.text
        data = response.json()
        pages += 1
        seen += [item["id"] for item in data["items"]]
        assert all(item["isActive"] is True for item in data["items"])
        assert data["pageDetails"]["requestCount"] == 500
        url = data["pageDetails"]["nextPageUrl"]
        if url:
            assert url.startswith(db.zone_url) and "/Companies/query?search=" in url
            assert "/query/next" not in url
    active = [c["id"] for c in db.companies() if c["isActive"]]
    assert 0 < len(active) < 1234
    assert seen == active  # each once, ascending ids
    assert pages == -(-len(active) // 500)
    log = db.requests(entity="Companies")
    assert [(r["method"], r["status"]) for r in log] == [("GET", 200)] * pages


def test_get_count_with_unencoded_search_matches_the_pages(make_sandbox):
    server = make_sandbox(companies=300, invoices=0)
    db = server.db
    base = f"{_zone_url(server, db)}v1.0/Companies/"
    search = json.dumps({"filter": [ACTIVE]})
    response = requests.get(f"{base}query/count?search={search}", headers=_headers(db), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"queryCount": sum(1 for c in db.companies() if c["isActive"])}


def test_company_type_picklist_has_the_keys_django_autotask_reads(autotask_sandbox):
    db = autotask_sandbox.db
    url = f"{_zone_url(autotask_sandbox, db)}v1.0/Companies/entityInformation/fields"
    response = requests.get(url, headers=_headers(db), timeout=10)
    assert response.status_code == 200, response.text
    (field,) = [f for f in response.json()["fields"] if f["name"] == "companyType"]
    assert field["isPickList"] is True
    values = field["picklistValues"]
    assert values and {int(v["value"]) for v in values} >= {
        c["companyType"] for c in db.companies()
    }
    for value in values:
        assert {"value", "label", "isDefaultValue", "sortOrder", "isActive", "isSystem"} <= set(
            value
        )


def test_get_query_without_search_is_a_500_with_errors(autotask_sandbox):
    db = autotask_sandbox.db
    url = f"{_zone_url(autotask_sandbox, db)}v1.0/Companies/query"
    response = requests.get(url, headers=_headers(db), timeout=10)
    assert response.status_code == 500
    assert response.json()["errors"]
