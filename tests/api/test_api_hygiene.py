"""Issue 18 item 5: control characters in query parameters (400, never 500), invalid filter
values (400 naming the parameter), non-integer ids under /api/ (JSON 404) and DRF's parse
errors (the documented `code`)."""

import pytest

pytestmark = pytest.mark.django_db

API_LISTS = ["/api/v1/invoices/", "/api/v1/customers/", "/api/v1/payments/"]
PAGES = ["/invoices/", "/customers/", "/payments/"]


@pytest.mark.parametrize("url", API_LISTS)
@pytest.mark.parametrize(
    "query", ["search=a%00b", "q=%00", "x%00=1", "search=%1b[2J", "ordering=%07"]
)
def test_control_characters_in_api_query_parameters_are_400_json(api_a, url, query):
    response = api_a.get(f"{url}?{query}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "invalid_parameter" and body["parameter"] and body["detail"]


@pytest.mark.parametrize("url", PAGES)
def test_control_characters_on_pages_are_a_clear_400_page(client_a, url, make_invoice, partner_a):
    make_invoice(partner_a)
    response = client_a.get(f"{url}?search=a%00b&q=%00")
    assert response.status_code == 400
    text = response.content.decode()
    assert "Bad request" in text and "control character" in text
    # Without them the page works.
    assert client_a.get(f"{url}?search=ab").status_code == 200


def test_a_tab_free_ordinary_search_still_works(api_a, partner_a, make_invoice):
    make_invoice(partner_a)
    assert api_a.get("/api/v1/invoices/?search=Élan ñ 漢").status_code == 200


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/invoices/?status=bogus", "status"),
        ("/api/v1/invoices/?customer=abc", "customer"),
        ("/api/v1/invoices/?customer=-1", "customer"),
        ("/api/v1/invoices/?customer=99999999999999999999999", "customer"),
        ("/api/v1/invoices/?archived=maybe", "archived"),
        ("/api/v1/invoices/?missing=perhaps", "missing"),
        ("/api/v1/customers/?archived=yes", "archived"),
        ("/api/v1/payments/?invoice=x", "invoice"),
        ("/api/v1/payments/?invoice=١٢", "invoice"),  # Unicode digits are not an id
        ("/api/v1/payments/?status=paid", "status"),
    ],
)
def test_invalid_filter_values_are_400_naming_the_parameter(api_a, url, parameter):
    response = api_a.get(url)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_parameter" and body["parameter"] == parameter
    assert parameter in body["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/invoices/?status=open&customer=&archived=all&missing=0",
        "/api/v1/customers/?archived=only",
        "/api/v1/payments/?status=succeeded",
    ],
)
def test_valid_filter_values_still_work(api_a, url):
    assert api_a.get(url).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/invoices/1.5/",
        "/api/v1/invoices/abc/",
        "/api/v1/invoices/abc/pdf/",
        "/api/v1/payments/1e3/",
        "/api/v1/customers/99999999999999999999999/",
        "/api/v1/no-such-thing/",
    ],
)
def test_non_integer_ids_under_the_api_are_json_404(api_a, path):
    response = api_a.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "not_found"


def test_pages_keep_their_html_404(client_a):
    response = client_a.get("/invoices/abc/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_json_parse_errors_carry_the_documented_code(api_a):
    response = api_a.post("/api/v1/payments/", b'{"invoice": ', content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parse_error" and body["detail"]


def test_unsupported_media_type_carries_a_code(api_a):
    response = api_a.post("/api/v1/payments/", b"x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
