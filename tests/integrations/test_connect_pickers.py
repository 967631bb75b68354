"""Issue 17 item 9: Connect's pickers come from the partner's own Autotask (picklists differ per
tenant), errors sit at their fields, the page has no inline script, the filters summary says one
true thing; and the favicon."""

import re

import pytest
from django.urls import reverse

from integrations.filters import describe_filters
from integrations.models import AutotaskConnection

pytestmark = pytest.mark.django_db

OPTIONS_URL = "/api/v1/integrations/autotask/options/"
TERMS = ["Due on receipt", "Net 15", "Net 30", "Net 45", "Net 60"]  # the sandbox's, by name


def test_options_come_from_this_tenants_autotask(api_a, autotask_sandbox):
    db = autotask_sandbox.db
    db.set_company_types({1: "Customer", 3: "Prospect", 9: "Reseller"})
    response = api_a.post(OPTIONS_URL, {"username": db.username, "secret": db.secret}, "json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {t["id"]: t["name"] for t in body["company_types"]} == {
        1: "Customer",
        3: "Prospect",
        9: "Reseller",
    }
    names = {row["id"]: row["companyName"] for row in db.companies() if row["id"] > 0}
    assert len(names) >= 8
    assert {c["id"]: c["name"] for c in body["companies"]} == names
    assert [c["name"] for c in body["companies"]] == sorted(names.values(), key=str.lower)
    assert body["companies_complete"] is True
    assert [t["name"] for t in body["payment_terms"]] == TERMS
    assert db.secret not in response.content.decode()


def test_options_use_the_stored_credentials_when_editing(api_a, partner_a, connect):
    connect(partner_a)
    response = api_a.post(OPTIONS_URL, {}, "json")
    assert response.status_code == 200
    assert len(response.json()["payment_terms"]) == len(TERMS)


def test_options_without_credentials_or_connection_ask_for_them(api_a, autotask_sandbox):
    response = api_a.post(OPTIONS_URL, {}, "json")
    assert response.status_code == 400
    assert response.json()["code"] == "credentials_required"
    assert autotask_sandbox.db.requests() == []


def test_options_refused_secret_in_plain_words(api_a, autotask_sandbox):
    db = autotask_sandbox.db
    response = api_a.post(OPTIONS_URL, {"username": db.username, "secret": "nope"}, "json")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_secret"
    assert "HTTP" not in response.json()["detail"]


def test_options_need_an_owner_or_admin(client, make_user, partner_a, autotask_sandbox):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(make_user(partner_a, role="member"))
    db = autotask_sandbox.db
    response = api.post(OPTIONS_URL, {"username": db.username, "secret": db.secret}, "json")
    assert response.status_code == 403
    assert db.requests() == []


def test_connect_form_accepts_a_company_type_only_this_tenant_has(client_a, autotask_sandbox):
    db = autotask_sandbox.db
    db.set_company_types({1: "Customer", 9: "Reseller"})
    form = {
        "account_email": "billing@alpha.test",
        "username": db.username,
        "secret": db.secret,
        "identifier": "invoice_number",
        "company_types": ["9"],
        "payment_terms": "1, 2",
    }
    response = client_a.post(reverse("integrations:autotask-connect"), form)
    assert response.status_code == 302, re.findall(
        r"errorlist[^>]*>[^<]*", response.content.decode()
    )
    conn = AutotaskConnection.objects.get()
    assert conn.filters == {"company_types": [9], "payment_terms": [1, 2]}


def test_connect_form_puts_an_unknown_company_type_and_a_bad_secret_at_their_fields(
    client_a, autotask_sandbox
):
    db = autotask_sandbox.db
    base = {"account_email": "b@alpha.test", "username": db.username, "identifier": "autotask_id"}
    html = client_a.post(
        reverse("integrations:autotask-connect"),
        {**base, "secret": db.secret, "company_types": ["77"]},
    ).content.decode()
    assert re.search(r'id="error-company_types">77 is not one of', html)
    html = client_a.post(
        reverse("integrations:autotask-connect"), {**base, "secret": "wrong"}
    ).content.decode()
    assert 'id="error-secret">Autotask refused the Password (Secret)' in html
    assert 'id="form-error"' not in html
    assert AutotaskConnection.objects.count() == 0


def test_connect_page_has_pickers_working_indicator_next_steps_and_no_inline_script(client_a):
    html = client_a.get(reverse("integrations:autotask-connect")).content.decode()
    assert 'data-options-url="/api/v1/integrations/autotask/options/"' in html
    assert 'id="load-options"' in html and 'id="connect-working"' in html
    assert 'id="what-next"' in html and "The first sync starts at once" in html
    assert "js/connect.js" in html
    assert "<script>" not in html and "onsubmit" not in html and "onclick" not in html
    assert "Only these companies" in html and "Payment term ids" not in html


def test_integrations_page_confirms_disconnect_with_data_confirm(client_a, partner_a, connect):
    connect(partner_a)
    html = client_a.get(reverse("dashboard:integrations")).content.decode()
    assert 'data-confirm="Disconnect Autotask?' in html
    assert "onsubmit" not in html and "<script>" not in html


@pytest.mark.parametrize(
    ("filters", "lines"),
    [
        ({}, ["No filters: every customer and invoice is synced, except voided invoices."]),
        (
            {"include_voided": True},
            ["No filters: every customer and invoice is synced, voided invoices included."],
        ),
        (
            {"active_only": True, "payment_terms": [1]},
            ["Active companies only", "Payment terms 1", "Voided invoices left out"],
        ),
    ],
)
def test_filters_summary_says_one_true_thing(filters, lines):
    assert describe_filters(filters) == lines


def test_filters_summary_uses_this_tenants_type_names():
    assert describe_filters({"company_types": [9]}, {9: "Reseller"})[0] == "Company types: Reseller"


def test_integrations_page_says_no_filters_once(client_a, partner_a, connect):
    connect(partner_a)
    html = client_a.get(reverse("dashboard:integrations")).content.decode()
    assert html.count("No filters") == 1
    assert "Voided invoices left out" not in html


def test_favicon(client, client_a):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("favicon.svg")
    html = client_a.get("/").content.decode()
    assert re.search(r'<link rel="icon" href="[^"]*favicon\.svg"', html)


def test_editing_filters_checks_a_tenant_type_against_the_live_picklist(
    client_a, partner_a, connect, autotask_sandbox
):
    autotask_sandbox.db.set_company_types({1: "Customer", 9: "Reseller"})
    connect(partner_a)
    form = {"account_email": "b@alpha.test", "identifier": "invoice_number"}
    url = reverse("integrations:autotask-edit")
    html = client_a.post(url, {**form, "company_types": ["77"]}).content.decode()
    assert 'id="error-company_types">77 is not one of: 1 (Customer), 9 (Reseller)' in html
    assert client_a.post(url, {**form, "company_types": ["9"]}).status_code == 302
    assert AutotaskConnection.objects.get().filters == {"company_types": [9]}


def test_api_refuses_a_type_the_tenant_lacks_after_asking_autotask(api_a, autotask_sandbox):
    db = autotask_sandbox.db
    body = {
        "account_email": "b@alpha.test",
        "username": db.username,
        "secret": db.secret,
        "filters": {"company_types": [99]},
    }
    response = api_a.post("/api/v1/integrations/autotask/", body, "json")
    assert response.status_code == 400
    assert "company_types" in response.json()["errors"]["filters"]
    assert AutotaskConnection.objects.count() == 0
