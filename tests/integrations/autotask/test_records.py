"""Typed records parse the recorded payloads and fail loudly on bad data."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from integrations.autotask import (
    AutotaskResponseError,
    Company,
    Contact,
    EntityField,
    Invoice,
    InvoicePdf,
    ThresholdInfo,
    ZoneInfo,
)
from integrations.autotask.errors import parse_json

# The recorded payloads live beside the repository (../shared), as in CI.
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "autotask" / "samples"


def load(name: str):
    return parse_json((SAMPLES / name).read_bytes())


def test_django_autotask_company_sample_parses():
    (company,) = [
        Company.from_api(i) for i in load("django-autotask/fixtures.API_ACCOUNT.json")["items"]
    ]
    assert company.id == 174
    assert company.company_name == "Autotask Corporation"
    assert company.postal_code == "12061"  # a number on the wire, text here
    assert company.bill_to_address1 == "26 Tech Valley Drive"
    assert company.is_active is True
    assert company.create_date == datetime(2012, 10, 24, 5, 0, tzinfo=UTC)


def test_include_fields_company_sample_parses_with_missing_optional_fields():
    body = load("autotask-restapi/README.companies-query-includeFields.json")
    (company,) = [Company.from_api(i) for i in body["items"]]
    assert company.id == 29683616
    assert company.company_name == "Sirius Cybernetics Corporation"
    assert company.phone is None


def test_contact_sample_with_int_is_active_parses():
    (contact,) = [
        Contact.from_api(i) for i in load("django-autotask/fixtures.API_CONTACT.json")["items"]
    ]
    assert contact.is_active is True
    assert contact.company_id == 174
    assert contact.last_modified_date == datetime(2015, 6, 10, 13, 22, 29, 877000, tzinfo=UTC)


def test_entity_field_samples_parse():
    fields = load("django-autotask/fixtures.API_ACCOUNT_TYPE_FIELD.json")["fields"]
    (field,) = [EntityField.from_api(f, entity="Companies") for f in fields]
    assert field.name == "companyType"
    assert field.is_pick_list is True
    assert field.picklist_values[0].label == "Customer"
    assert field.picklist_values[0].value == "3"
    udfs = load("django-autotask/fixtures.API_UDF.json")["fields"]
    (udf,) = [EntityField.from_api(f, entity="Companies") for f in udfs]
    assert udf.data_type == "string"
    assert udf.picklist_values[0].parent_value is None


def test_every_sample_with_items_of_a_known_entity_parses():
    fixtures = load("django-autotask/fixtures.json")
    for key, parser in [("API_ACCOUNT_ITEMS", Company), ("API_CONTACT_ITEMS", Contact)]:
        assert [parser.from_api(i).id for i in fixtures[key]]
    assert load("autotask-restapi/README.companies-count-result.json") == {"queryCount": 7}


API_MD_INVOICE = json.dumps(
    {
        "id": 155,
        "batchID": 79,
        "comments": None,
        "companyID": 369,
        "createDateTime": "2025-09-05T09:47:15.227Z",
        "creatorResourceID": 29682885,
        "dueDate": "2025-10-05T00:00:00.000Z",
        "fromDate": "2025-09-03T00:00:00.000Z",
        "invoiceDateTime": "2025-09-05T00:00:00.000Z",
        "invoiceEditorTemplateID": 102,
        "invoiceNumber": "1085",
        "invoiceTotal": 52.7775,
        "isVoided": False,
        "orderNumber": "",
        "paidDate": None,
        "paymentTerm": 1,
        "taxGroup": None,
        "taxRegionName": "VAT",
        "toDate": "2025-09-05T00:00:00.000Z",
        "totalTaxValue": 11.0833,
        "voidedByResourceID": None,
        "voidedDate": None,
        "webServiceDate": None,
        "invoiceStatus": 1,
        "invoiceTaxMethodExternalCode": None,
        "someFutureField": {"x": 1},
    }
)


def test_api_md_invoice_example_parses_exactly():
    invoice = Invoice.from_api(parse_json(API_MD_INVOICE))
    assert invoice.invoice_total == Decimal("52.7775")
    assert invoice.total_tax_value == Decimal("11.0833")
    assert invoice.due_date == date(2025, 10, 5)
    assert invoice.paid_date is None
    assert invoice.create_date_time == datetime(2025, 9, 5, 9, 47, 15, 227000, tzinfo=UTC)
    assert invoice.invoice_status == 1


def test_date_only_fields_take_the_written_date_without_conversion():
    raw = {"id": 1, "companyID": 2, "paidDate": "2025-10-01T23:30:00-05:00"}
    assert Invoice.from_api(raw).paid_date == date(2025, 10, 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"id": 155, "companyID": 1, "invoiceTotal": "abc"},
            "Invoices record 155: field 'invoiceTotal' is not a number: 'abc'",
        ),
        ({"companyID": 1}, "Invoices record: field 'id' is missing"),
        ({"id": 155}, "Invoices record 155: field 'companyID' is missing"),
        ({"id": 155, "companyID": None}, "Invoices record 155: field 'companyID' is null"),
        ({"id": "155", "companyID": 1}, "field 'id' is not an integer"),
        ({"id": 155, "companyID": 1, "isVoided": "no"}, "field 'isVoided' is not a boolean"),
        (
            {"id": 155, "companyID": 1, "createDateTime": "yesterday"},
            "field 'createDateTime' is not an ISO date-time",
        ),
        (
            {"id": 155, "companyID": 1, "paidDate": "2025-13-01"},
            "field 'paidDate' is not an ISO date",
        ),
        ({"id": 155, "companyID": 1, "invoiceTotal": True}, "field 'invoiceTotal' is not a number"),
    ],
)
def test_bad_invoice_fields_raise_naming_entity_and_field(raw, message):
    with pytest.raises(AutotaskResponseError, match=message.replace("(", r"\(")) as info:
        Invoice.from_api(raw)
    assert info.value.retryable is False
    assert info.value.entity == "Invoices"


def test_contact_is_active_accepts_bool_and_01_but_not_other_ints():
    assert Contact.from_api({"id": 1, "companyID": 2, "isActive": 0}).is_active is False
    assert Contact.from_api({"id": 1, "companyID": 2, "isActive": True}).is_active is True
    with pytest.raises(AutotaskResponseError, match="Contacts record 1: field 'isActive'"):
        Contact.from_api({"id": 1, "companyID": 2, "isActive": 2})


def test_company_billing_address_accepts_both_names():
    assert Company.from_api({"id": 1, "billingAddress1": "A"}).bill_to_address1 == "A"
    assert Company.from_api({"id": 1, "billToAddress1": "B"}).bill_to_address1 == "B"


def test_zone_url_is_normalised():
    for url in [
        "https://webservices15.autotask.net/ATServicesRest/",
        "https://webservices15.autotask.net/atservicesrest",
        "https://webservices15.autotask.net/",
    ]:
        zone = ZoneInfo.from_api({"zoneName": "x", "url": url, "webUrl": None, "ci": 1})
        assert zone.api_url("Invoices/query").lower() == (
            "https://webservices15.autotask.net/atservicesrest/v1.0/invoices/query"
        )
    with pytest.raises(AutotaskResponseError, match="'url' is missing"):
        ZoneInfo.from_api({"zoneName": "x"})


def test_threshold_info_requires_all_three_numbers():
    info = ThresholdInfo.from_api(
        {
            "externalRequestThreshold": 10000,
            "requestThresholdTimeframe": 60,
            "currentTimeframeRequestCount": 124,
        }
    )
    assert info.external_request_threshold == 10000
    with pytest.raises(AutotaskResponseError, match="currentTimeframeRequestCount"):
        ThresholdInfo.from_api({"externalRequestThreshold": 1, "requestThresholdTimeframe": 60})


def test_invoice_pdf_rejects_bad_base64_and_non_pdf():
    with pytest.raises(AutotaskResponseError, match="not valid base64"):
        InvoicePdf.from_api({"data": "!!!"}, invoice_id=1)
    with pytest.raises(AutotaskResponseError, match="not a PDF"):
        InvoicePdf.from_api({"data": "PGh0bWw+"}, invoice_id=1)
