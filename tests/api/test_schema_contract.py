"""What the schema fuzz (test_schema_fuzz.py) found, fixed (issue 18): the OpenAPI schema says
what the API accepts (links, empty and control-character query values, decimal and free-text
patterns, filter keys, the token lifetime), and the API refuses what the schema refuses."""

import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from config.api import AMOUNT_PATTERN, NON_NEGATIVE_AMOUNT_PATTERN
from integrations.filters import KEYS
from partners.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operation(schema, path, method):
    return schema["paths"][f"/api/v1/{path}"][method]


def test_created_objects_link_to_their_operations(schema):
    links = operation(schema, "payments/", "post")["responses"]["201"]["links"]
    assert set(links) == {"payments_retrieve", "payments_destroy"}
    assert links["payments_destroy"]["parameters"] == {"id": "$response.body#/id"}
    token_links = operation(schema, "auth/tokens/", "post")["responses"]["201"]["links"]
    assert "auth_tokens_destroy" in token_links


def test_query_parameters_say_empty_is_absent_and_text_has_no_control_characters(schema):
    params = {p["name"]: p for p in operation(schema, "invoices/", "get")["parameters"]}
    assert all(p["allowEmptyValue"] for p in params.values())
    pattern = params["search"]["schema"]["pattern"]
    assert re.fullmatch(pattern, "Acme 2026 é")
    assert not re.fullmatch(pattern, "a\x00b") and not re.fullmatch(pattern, "\x1b[2J")
    assert params["customer"]["schema"]["minimum"] == 1
    assert params["page_size"]["schema"]["minimum"] == 1
    idem = {p["name"]: p for p in operation(schema, "payments/", "post")["parameters"]}
    assert idem["Idempotency-Key"]["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}


@pytest.mark.parametrize("value", ["0.01", "1", "5.", ".5", "0.50", "123456789012.99"])
def test_amount_pattern_accepts_what_drf_accepts(value):
    assert re.fullmatch(AMOUNT_PATTERN, value)
    assert re.fullmatch(NON_NEGATIVE_AMOUNT_PATTERN, value)


@pytest.mark.parametrize("value", ["", "-", ".", "0", "0.00", "-1", "1.234", "1234567890123"])
def test_amount_pattern_refuses_what_drf_refuses(value):
    assert not re.fullmatch(AMOUNT_PATTERN, value)


def test_request_strings_and_filters(schema, settings):
    components = schema["components"]["schemas"]
    number = components["InvoiceCreateRequest"]["properties"]["number"]
    assert re.fullmatch(number["pattern"], "INV-1")
    assert not re.fullmatch(number["pattern"], "  ")
    assert not re.fullmatch(number["pattern"], "IN\x00V")
    filters = components["ConnectInputRequest"]["properties"]["filters"]
    assert set(filters["properties"]) == KEYS and filters["additionalProperties"] is False
    token = components["ApiTokenCreateRequest"]["properties"]
    assert token["expires_in_days"]["maximum"] == settings.API_TOKEN_TTL_DAYS


def test_the_api_refuses_what_the_schema_refuses(api_a, user_a):
    assert api_a.get("/api/v1/sync-runs/", {"status": "AAA"}).json()["parameter"] == "status"
    for path in ("customers/", "payments/"):
        response = api_a.get(f"/api/v1/{path}", {"ordering": "nope"})
        assert response.status_code == 400 and response.json()["parameter"] == "ordering"
    response = api_a.get("/api/v1/invoices/", {"dates": "paid"})
    assert response.status_code == 400 and response.json()["parameter"] == "dates"
    # A token name must be a string, not a number made one.
    response = api_a.post("/api/v1/auth/tokens/", {"name": 0}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    assert not ApiToken.objects.filter(user=user_a).exists()
    # Filters are an object: a form body cannot carry them, so the integration API takes JSON.
    response = api_a.post("/api/v1/integrations/autotask/preview/", {"filters": "{}"})
    assert response.status_code == 415


def test_pdf_without_a_connection_is_409_not_503(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a)
    response = api_a.get(f"/api/v1/invoices/{invoice.pk}/pdf/")
    assert response.status_code == 409
    assert response.json()["code"] == "pdf_unavailable"
