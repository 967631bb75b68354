"""Client behaviour against the in-memory fake transport (tests/integrations/autotask/fakes.py)."""

import base64
import logging
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from integrations.autotask import (
    AutotaskAuthError,
    AutotaskOriginError,
    AutotaskRequestError,
    AutotaskResponseError,
    Invoice,
    Q,
    Query,
    RequestStats,
    ZoneInfo,
)

from .fakes import INTEGRATION_CODE, SECRET, USERNAME, ZONE_BASE, invoice, page

NEXT = ZONE_BASE + "V1.0/Invoices/query/next?paging=abc"


def test_zone_lookup_has_no_auth_headers_and_is_cached(make_client, fake):
    client = make_client()
    fake.api("GET", r"Invoices/\d+", (200, {}, {"item": invoice(7)}))
    client.get_invoice(7)
    client.get_invoice(7)
    (lookup,) = fake.calls("GET", "zoneInformation")
    assert lookup.query == {"user": [USERNAME]}
    assert not {"Secret", "UserName", "ApiIntegrationCode"} & set(lookup.headers)
    sent = fake.calls("GET", "Invoices/7")[0]
    assert sent.headers["ApiIntegrationCode"] == INTEGRATION_CODE
    assert sent.headers["UserName"] == USERNAME
    assert sent.headers["Secret"] == SECRET
    assert sent.headers["Content-Type"] == "application/json"
    assert client.zone.ci == 4242


def test_unknown_user_raises_auth_error(make_client, fake):
    fake.on(
        "GET",
        r"/atservicesrest/v1\.0/zoneInformation",
        (500, {}, {"errors": ["Zone information could not be determined"]}),
    )
    with pytest.raises(AutotaskAuthError) as info:
        make_client().get_invoice(1)
    assert info.value.kind == "unknown_user"
    assert len(fake.sent) == 1  # not retried


def test_paging_posts_the_same_body_to_next_page_url(make_client, fake):
    client = make_client()
    fake.api("POST", "Invoices/query", (200, {}, page([invoice(1), invoice(2)], NEXT)))
    fake.api("POST", "Invoices/query/next", (200, {}, page([invoice(3)])))
    query = Query(filters=[Q.eq("isVoided", False)])
    pages = list(client.iter_pages("Invoices", query))
    assert [[i.id for i in p] for p in pages] == [[1, 2], [3]]
    assert pages[0].next_page_url == NEXT
    assert pages[1].url == NEXT
    assert all(isinstance(i, Invoice) for p in pages for i in p)
    posts = fake.calls("POST")
    assert len(posts) == 2 and not fake.calls("GET", "query")
    assert posts[0].body == posts[1].body == query.to_body()
    assert posts[1].url == NEXT


def test_resume_from_a_saved_next_page_url(make_client, fake):
    client = make_client()
    fake.api("POST", "Invoices/query/next", (200, {}, page([invoice(3)])))
    assert [i.id for i in client.iter_invoice_pages(resume_from=NEXT).__next__()] == [3]
    assert [s.url for s in fake.calls("POST")] == [NEXT]


def test_next_page_url_on_another_origin_is_refused(make_client, fake):
    client = make_client()
    evil = "https://evil.example.test/ATServicesRest/V1.0/Invoices/query/next?paging=x"
    fake.api("POST", "Invoices/query", (200, {}, page([invoice(1)], evil)))
    pages = client.iter_pages("Invoices")
    assert len(next(pages)) == 1
    with pytest.raises(AutotaskOriginError, match=r"evil\.example\.test"):
        next(pages)
    assert not [s for s in fake.sent if "evil" in s.url]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (page([invoice(1)], count=2), "count=2 but has 1 items"),
        ({"items": [invoice(1)]}, "no 'pageDetails'"),
        ({"pageDetails": {"count": 0}}, "no 'items' list"),
        ([], "non-object body"),
    ],
)
def test_broken_pages_raise_instead_of_stopping(make_client, fake, reply, message):
    fake.api("POST", "Invoices/query", (200, {}, reply))
    with pytest.raises(AutotaskResponseError, match=message):
        list(make_client().iter_invoices())


def test_repeated_next_page_url_raises(make_client, fake):
    fake.api("POST", "Invoices/query", (200, {}, page([invoice(1)], NEXT)))
    fake.api("POST", "Invoices/query/next", (200, {}, page([invoice(2)], NEXT)))
    with pytest.raises(AutotaskResponseError, match="repeated a nextPageUrl"):
        list(make_client().iter_invoices())
    assert len(fake.calls("POST")) == 2


def test_1001_ids_are_batched_into_three_in_queries(make_client, fake):
    def reply(sent, match):
        (cond,) = [f for f in sent.body["filter"] if f["op"] == "in"]
        return 200, {}, page([invoice(i) for i in cond["value"]])

    fake.api("POST", "Invoices/query", reply)
    client = make_client()
    got = [i.id for i in client.iter_invoices_by_ids([*range(1, 1002), 5, 5])]
    assert got == list(range(1, 1002))
    posts = fake.calls("POST")
    assert [len(p.body["filter"][0]["value"]) for p in posts] == [400, 400, 201]


def test_include_fields_gain_the_fields_the_record_needs(make_client, fake):
    fake.api("POST", "Invoices/query", (200, {}, page([{"id": 1, "companyID": 2}])))
    list(make_client().iter_invoices(Query(include_fields=["invoiceNumber"])))
    assert fake.calls("POST")[0].body["IncludeFields"] == ["invoiceNumber", "id", "companyID"]


def test_count(make_client, fake):
    fake.api("POST", "Companies/query/count", (200, {}, {"queryCount": 7}))
    assert make_client().count("Companies", [Q.eq("isActive", True)]) == 7
    assert fake.calls("POST")[0].body == {
        "filter": [{"op": "eq", "field": "isActive", "value": True}]
    }
    fake.api("POST", "Companies/query/count", (200, {}, {"queryCount": "7"}))
    with pytest.raises(AutotaskResponseError, match="queryCount"):
        make_client().count("Companies")


def test_get_by_id_accepts_404_and_null_item(make_client, fake):
    client = make_client()
    fake.api("GET", r"Invoices/1", (404, {}, ""))
    fake.api("GET", r"Invoices/2", (200, {}, {"item": None}))
    fake.api("GET", r"Invoices/3", (200, {}, {"item": invoice(3, invoiceTotal=10)}))
    fake.api("GET", r"Companies/4", (200, {}, {"item": {"id": 4, "companyName": "Acme"}}))
    assert client.get_invoice(1) is None
    assert client.get_invoice(2) is None
    assert client.get_invoice(3).invoice_total == Decimal(10)
    assert client.get_company(4).company_name == "Acme"
    assert client.stats.errors_by_kind == {}


def test_patch_paid_date_sends_a_date_only_value(make_client, fake):
    client = make_client()
    fake.api("PATCH", "Invoices", lambda s, m: (200, {}, {"itemId": s.body["id"]}))
    assert client.set_invoice_paid_date(155, date(2025, 10, 1)) == 155
    assert client.set_invoice_paid_date(155, None) == 155
    bodies = [s.body for s in fake.calls("PATCH")]
    assert bodies == [
        {"id": 155, "paidDate": "2025-10-01T00:00:00Z"},
        {"id": 155, "paidDate": None},
    ]
    with pytest.raises(TypeError, match="date-only"):
        client.set_invoice_paid_date(155, datetime(2025, 10, 1, tzinfo=UTC))


def test_patch_web_service_date_and_item_id_check(make_client, fake):
    client = make_client()
    fake.api("PATCH", "Invoices", (200, {}, {"itemId": 155}))
    client.set_invoice_web_service_date(155, datetime(2025, 10, 1, 8, 0, tzinfo=UTC))
    assert fake.calls("PATCH")[0].body == {"id": 155, "webServiceDate": "2025-10-01T08:00:00.000Z"}
    with pytest.raises(AutotaskResponseError, match="itemId 155"):
        client.set_invoice_paid_date(156, date(2025, 1, 1))


PDF = b"%PDF-1.4\n% fake\n%%EOF\n"
PDF_ENVELOPE = {
    "id": 155,
    "contentType": "application/pdf",
    "fileName": "Invoice 1085.pdf",
    "fileSize": len(PDF),
    "data": base64.b64encode(PDF).decode(),
}


@pytest.mark.parametrize("body", [PDF_ENVELOPE, {"item": PDF_ENVELOPE}], ids=["flat", "wrapped"])
def test_invoice_pdf_flat_and_wrapped(make_client, fake, body):
    fake.api("GET", "Invoices/155/InvoicePDF", (200, {}, body))
    pdf = make_client().get_invoice_pdf(155)
    assert pdf.content == PDF
    assert pdf.file_name == "Invoice 1085.pdf"
    assert pdf.content_type == "application/pdf"
    assert pdf.invoice_id == 155


def test_invoice_pdf_that_is_not_a_pdf_is_rejected(make_client, fake):
    html = dict(PDF_ENVELOPE, data=base64.b64encode(b"<html>error</html>").decode())
    fake.api("GET", "Invoices/155/InvoicePDF", (200, {}, html))
    with pytest.raises(AutotaskResponseError, match="not a PDF"):
        make_client().get_invoice_pdf(155)


def test_threshold_entity_fields_and_check_connection(make_client, fake):
    fake.api(
        "GET",
        "ThresholdInformation",
        (
            200,
            {},
            {
                "externalRequestThreshold": 10000,
                "requestThresholdTimeframe": 60,
                "currentTimeframeRequestCount": 124,
            },
        ),
    )
    fake.api(
        "GET",
        "Companies/entityInformation/fields",
        (
            200,
            {},
            {
                "fields": [
                    {
                        "name": "companyType",
                        "dataType": "short",
                        "isPickList": True,
                        "picklistValues": [{"value": "3", "label": "Customer"}],
                    }
                ]
            },
        ),
    )
    client = make_client()
    assert client.check_connection().current_timeframe_request_count == 124
    (field,) = client.get_entity_fields("Companies")
    assert field.picklist_values[0].label == "Customer"


def test_rediscovers_zone_once_after_401_and_retries_on_the_new_zone(make_client, fake):
    old = "https://webservices2.example.test/ATServicesRest/"
    client = make_client()
    client._zone_cache.put(
        client.zone_lookup_url,
        USERNAME,
        ZoneInfo(zone_name="old", base_url=old, web_url=None, ci=4242),
    )
    fake.on(
        "GET",
        r"/ATServicesRest/V1\.0/Invoices/9",
        lambda s, m: (401, {}, "") if "webservices2" in s.url else (200, {}, {"item": invoice(9)}),
    )
    assert client.get_invoice(9).id == 9
    assert [s.url.split("/")[2] for s in fake.sent] == [
        "webservices2.example.test",
        "lookup.example.test",
        "webservices15.example.test",
    ]


def test_401_on_the_same_zone_is_raised_after_one_rediscovery(make_client, fake):
    fake.api("GET", r"Invoices/9", (401, {}, ""))
    client = make_client()
    with pytest.raises(AutotaskAuthError) as info:
        client.get_invoice(9)
    assert info.value.kind == "bad_secret"
    assert len(fake.calls("GET", "zoneInformation")) == 2
    assert len(fake.calls("GET", "Invoices/9")) == 1


def test_stats_and_logs_count_requests_without_secrets(make_client, fake, caplog):
    stats = RequestStats()
    client = make_client(stats=stats)
    fake.api("POST", "Invoices/query", (200, {}, page([invoice(1)])))
    fake.api("GET", r"Invoices/2", (500, {}, {"errors": [f"broken for {SECRET}"]}))
    with caplog.at_level(logging.DEBUG, logger="integrations.autotask"):
        list(client.iter_invoices())
        with pytest.raises(AutotaskRequestError) as info:
            client.get_invoice(2)
    assert stats.count == 3
    assert stats.by_entity == {"zoneInformation": 1, "Invoices": 2}
    assert stats.errors_by_kind == {"request": 1}
    assert SECRET not in caplog.text and SECRET not in str(info.value)
    assert "POST /ATServicesRest/V1.0/Invoices/query -> 200" in caplog.text
    assert SECRET not in repr(client)


def test_before_send_runs_before_each_request_and_can_stop_it(make_client, fake):
    fake.api("GET", r"Invoices/\d+", (200, {}, {"item": invoice(1)}))
    client = make_client()
    client.zone  # the zone lookup happens before the hook is set
    calls = []
    client.before_send = lambda: calls.append(len(fake.sent))
    client.get_invoice(1)
    assert calls == [len(fake.sent) - 1]  # once, just before the request went out
    sent = len(fake.sent)

    def stop():
        raise RuntimeError("no longer ours")

    client.before_send = stop
    with pytest.raises(RuntimeError, match="no longer ours"):
        client.get_invoice(1)
    assert len(fake.sent) == sent  # nothing sent
