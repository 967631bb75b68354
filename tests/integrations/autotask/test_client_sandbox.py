"""The client against the real sandbox server over HTTP (sandbox/, tests/harness/sandbox.py).

Retries sleep on a fake clock, so faults cost no wall time; only the sandbox's own latency and
timeouts are real.
"""

from __future__ import annotations

import threading
import uuid
from datetime import date

import pytest
import redis
from django.conf import settings

pytest.importorskip("sandbox.server")

from integrations.autotask import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskClient,
    AutotaskRequestError,
    AutotaskResponseError,
    AutotaskThrottled,
    AutotaskTransientError,
    NoopLimiter,
    Q,
    Query,
    RedisLimiter,
    RetryPolicy,
)
from integrations.autotask.zones import ZoneCache


@pytest.fixture
def connect(clock):
    def make(server, *, username=None, secret=None, integration_code=None, **kwargs):
        db = server.db
        kwargs.setdefault("limiter", NoopLimiter())
        kwargs.setdefault(
            "retry_policy",
            RetryPolicy(max_attempts=kwargs.pop("max_attempts", 6), sleep=clock.sleep),
        )
        return AutotaskClient(
            username or db.username,
            secret or db.secret,
            integration_code=integration_code or db.integration_code,
            zone_lookup_url=server.zone_lookup_url,
            zone_cache=ZoneCache(),
            **kwargs,
        )

    return make


@pytest.fixture
def redis_limiter():
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"test-autotask-{uuid.uuid4().hex[:8]}:"

    def make(**kwargs) -> RedisLimiter:
        return RedisLimiter(client, key_prefix=prefix, **kwargs)

    yield make
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_reads_every_invoice_across_pages_with_post_only(make_sandbox, connect):
    server = make_sandbox(invoices=1203, companies=30)
    client = connect(server)
    pages = list(client.iter_invoice_pages())
    ids = [invoice.id for page in pages for invoice in page]
    assert len(ids) == len(set(ids)) == 1203
    assert ids == sorted(ids)
    assert [len(p) for p in pages] == [500, 500, 203]
    assert pages[-1].next_page_url is None
    log = server.db.requests(entity="Invoices")
    assert len(log) == 3
    assert {entry["method"] for entry in log} == {"POST"}
    assert client.stats.count == 4  # zone lookup + 3 pages
    assert client.count("Invoices") == 1203


def test_filters_and_include_fields_reach_the_server(make_sandbox, connect):
    server = make_sandbox(invoices=120)
    client = connect(server)
    unvoided = list(client.iter_invoices(Query(filters=[Q.eq("isVoided", False)])))
    assert unvoided and all(i.is_voided is False for i in unvoided)
    assert client.count("Invoices", [Q.eq("isVoided", False)]) == len(unvoided)
    slim = list(client.iter_invoices(Query(include_fields=["invoiceNumber"], max_records=50)))
    assert len(slim) == 120
    assert all(i.invoice_total is None and i.invoice_number is not None for i in slim)
    companies = list(client.iter_companies())
    assert companies and all(c.company_name for c in companies)
    assert list(client.iter_contacts())
    assert list(client.iter_payment_terms())
    first = unvoided[0]
    lines = list(client.iter_billing_items([Q.eq("invoiceID", first.id)]))
    assert all(line.invoice_id == first.id for line in lines)


def test_1001_ids_take_three_queries(make_sandbox, connect):
    server = make_sandbox(invoices=1001)
    client = connect(server)
    ids = [row["id"] for row in server.db.invoices()]
    got = list(client.iter_invoices_by_ids(ids))
    assert sorted(i.id for i in got) == sorted(ids)
    assert len(server.db.requests(entity="Invoices", method="POST")) == 3


def test_get_by_id_handles_404_and_null_item(make_sandbox, connect):
    server = make_sandbox(invoices=5)
    client = connect(server)
    existing = server.db.invoices()[0]["id"]
    assert client.get_invoice(existing).id == existing
    assert client.get_invoice(99_999_999) is None
    server.db.set_switches(missing_item="null")
    assert client.get_invoice(99_999_999) is None
    assert client.get_company(server.db.companies()[0]["id"]) is not None


def test_paid_date_round_trip_is_date_only(make_sandbox, connect):
    server = make_sandbox(invoices=5)
    client = connect(server)
    invoice_id = server.db.invoices()[0]["id"]
    client.set_invoice_paid_date(invoice_id, date(2025, 10, 1))
    (patch,) = server.db.requests(method="PATCH")
    assert patch["body"]["paidDate"] == "2025-10-01T00:00:00Z"
    assert client.get_invoice(invoice_id).paid_date == date(2025, 10, 1)
    client.set_invoice_paid_date(invoice_id, None)
    assert client.get_invoice(invoice_id).paid_date is None


@pytest.mark.parametrize("wrapped", [False, True])
def test_invoice_pdf(make_sandbox, connect, wrapped):
    server = make_sandbox(invoices=3)
    server.db.set_switches(pdf_wrapped=wrapped)
    invoice_id = server.db.invoices()[0]["id"]
    pdf = connect(server).get_invoice_pdf(invoice_id)
    assert pdf.content.startswith(b"%PDF-")
    assert pdf.file_name


def test_threshold_fields_and_connection_check(make_sandbox, connect):
    server = make_sandbox(threshold=1234)
    client = connect(server)
    assert client.check_connection().external_request_threshold == 1234
    fields = {f.name: f for f in client.get_entity_fields("Invoices")}
    assert fields["id"].is_queryable is True


@pytest.mark.parametrize(
    ("override", "kind"),
    [
        ({"secret": "wrong-secret"}, "bad_secret"),
        ({"username": "nobody@sandbox.test"}, "unknown_user"),
        ({"integration_code": "NOT-OURS"}, "bad_integration_code"),
    ],
)
def test_auth_failures(make_sandbox, connect, override, kind):
    server = make_sandbox(invoices=1)
    with pytest.raises(AutotaskAuthError) as info:
        connect(server, **override).get_invoice(1)
    assert info.value.kind == kind
    assert info.value.retryable is False
    assert "wrong-secret" not in str(info.value)


@pytest.mark.parametrize("status", [500, 403])
def test_permission_denied(make_sandbox, connect, status):
    server = make_sandbox(invoices=1)
    server.db.set_switches(permission_denied=True, permission_status=status)
    with pytest.raises(AutotaskAuthError) as info:
        list(connect(server).iter_invoices())
    assert info.value.kind == "permission"


def test_non_queryable_field_is_a_request_error_not_retried(make_sandbox, connect):
    server = make_sandbox(invoices=3)
    with pytest.raises(AutotaskRequestError):
        list(connect(server).iter_invoices([Q.eq("dueDate", date(2025, 1, 1))]))
    assert len(server.db.requests(entity="Invoices")) == 1


@pytest.mark.parametrize("kind", ["503_html", "503_empty", "500_plain", "html_500", "drop"])
def test_transient_faults_are_retried(make_sandbox, connect, clock, kind):
    server = make_sandbox(invoices=3)
    server.db.fail_next(2, kind, entity="Invoices")
    assert len(list(connect(server).iter_invoices())) == 3
    assert len(clock.sleeps) == 2


def test_429_with_retry_after_is_honoured(make_sandbox, connect, clock):
    server = make_sandbox(invoices=3)
    server.db.fail_next(1, "429", entity="Invoices", retry_after=17)
    server.db.fail_next(1, "429", entity="Invoices")
    client = connect(server)
    assert len(list(client.iter_invoices())) == 3
    assert clock.sleeps[0] >= 17
    assert client.stats.errors_by_kind["throttled"] == 2


def test_429_with_long_retry_after_is_raised_for_rescheduling(make_sandbox, connect, clock):
    server = make_sandbox(invoices=3)
    server.db.fail_next(1, "429", entity="Invoices", retry_after=3600)
    with pytest.raises(AutotaskThrottled) as info:
        list(connect(server).iter_invoices())
    assert info.value.retry_after == 3600
    assert clock.sleeps == []


def test_malformed_json_on_200_is_a_response_error(make_sandbox, connect, clock):
    server = make_sandbox(invoices=3)
    server.db.fail_next(1, "malformed_json", entity="Invoices")
    with pytest.raises(AutotaskResponseError):
        list(connect(server).iter_invoices())
    assert clock.sleeps == []


def test_timeout_is_transient(make_sandbox, connect):
    server = make_sandbox(invoices=3)
    server.db.fail_next(1, "timeout", entity="Invoices", seconds=2)
    client = connect(server, timeout=0.5, max_attempts=1)
    with pytest.raises(AutotaskTransientError) as info:
        client.get_invoice(server.db.invoices()[0]["id"])
    assert info.value.kind == "timeout"
    assert info.value.retryable is True


def test_thread_limit_error_is_throttled_and_retried(make_sandbox, connect):
    server = make_sandbox(invoices=3, latency_ms=300)
    server.db.set_switches(thread_limit=1)
    # Real (short) sleeps: the other request must actually finish before a retry can pass.
    client = connect(
        server, retry_policy=RetryPolicy(max_attempts=10, base_delay=0.2, max_delay=0.5)
    )
    client.zone  # discover before the race
    errors: list[Exception] = []

    def read():
        try:
            client.get_invoice(server.db.invoices()[0]["id"])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.stats.errors_by_kind.get("throttled", 0) >= 1


def test_redis_limiter_keeps_four_threads_within_three_in_flight(
    make_sandbox, connect, redis_limiter
):
    server = make_sandbox(invoices=20, latency_ms=100)
    client = connect(server, limiter=redis_limiter(max_concurrency=3), max_attempts=1)
    client.check_connection()
    ids = [row["id"] for row in server.db.invoices()]
    errors: list[Exception] = []

    def read(chunk):
        try:
            for invoice_id in chunk:
                client.get_invoice(invoice_id)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The sandbox refuses a 4th concurrent request per endpoint with a thread-limit error;
    # with max_attempts=1 any such refusal would surface here.
    assert errors == []
    assert {e["status"] for e in server.db.requests(entity="Invoices")} == {200}
    assert len(server.db.requests(entity="Invoices")) == 20


def test_budget_exhausted_sends_nothing(make_sandbox, connect, redis_limiter):
    server = make_sandbox(invoices=3, threshold=6)  # budget: 3 requests an hour
    client = connect(server, limiter=redis_limiter(budget_share=0.5))
    invoice_id = server.db.invoices()[0]["id"]
    client.get_invoice(invoice_id)  # ThresholdInformation + 1
    client.get_invoice(invoice_id)  # + 1 = 3
    before = len(server.db.request_log)
    with pytest.raises(AutotaskBudgetExhausted) as info:
        client.get_invoice(invoice_id)
    assert info.value.resume_at is not None
    assert len(server.db.request_log) == before


# --- the hourly threshold answered as a 500 (issue 16; API.md §4: UNVERIFIED status) ----------


def test_threshold_500_is_throttling_retried_then_succeeds(make_sandbox, connect, clock):
    """Switch threshold_status=500: the exceeded hourly threshold answers 500 with the threshold
    text. The client retries it as throttling (never a request error) and goes on once the
    rolling hour has room again."""
    server = make_sandbox(invoices=3)
    server.db.set_switches(threshold_status=500, threshold=2)
    invoice_id = server.db.invoices()[0]["id"]
    client = connect(server)
    client.get_invoice(invoice_id)
    client.get_invoice(invoice_id)  # the hour's 2 requests are spent
    slept, statuses = [], []

    def sleep(seconds):  # the rolling hour frees up while the client waits
        slept.append(seconds)
        if len(slept) == 2:
            statuses.extend(r["status"] for r in server.db.requests(entity="Invoices"))
            server.db.reset_counters()  # (the request log too)

    client.retry.sleep = sleep
    assert client.get_invoice(invoice_id).id == invoice_id
    statuses.extend(r["status"] for r in server.db.requests(entity="Invoices"))
    assert statuses == [200, 200, 500, 500, 200]
    assert len(slept) == 2
    assert client.stats.errors_by_kind["throttled"] == 2


def test_threshold_500_that_persists_raises_throttled(make_sandbox, connect, clock):
    server = make_sandbox(invoices=3)
    server.db.set_switches(threshold_status=500, threshold=1)
    invoice_id = server.db.invoices()[0]["id"]
    client = connect(server, max_attempts=3)
    client.get_invoice(invoice_id)
    with pytest.raises(AutotaskThrottled) as info:
        client.get_invoice(invoice_id)
    assert info.value.status == 500
    assert info.value.retryable is True
    assert "threshold" in info.value.message
    assert len(clock.sleeps) == 2  # 3 attempts, then raised for the caller to reschedule
    assert [r["status"] for r in server.db.requests(entity="Invoices")] == [200, 500, 500, 500]


def test_threshold_500_with_long_retry_after_is_raised_at_once(make_sandbox, connect, clock):
    server = make_sandbox(invoices=3)
    server.db.set_switches(threshold_status=500, threshold=1, threshold_retry_after=True)
    invoice_id = server.db.invoices()[0]["id"]
    client = connect(server)
    client.get_invoice(invoice_id)
    with pytest.raises(AutotaskThrottled) as info:
        client.get_invoice(invoice_id)
    assert info.value.status == 500
    assert info.value.retry_after > 600  # until the hour's first request leaves the window
    assert clock.sleeps == []


def test_500_threshold_fault_is_throttling(make_sandbox, connect, clock):
    server = make_sandbox(invoices=3)
    server.db.fail_next(2, "500_threshold", entity="Invoices", retry_after=7)
    client = connect(server)
    assert len(list(client.iter_invoices())) == 3
    assert min(clock.sleeps) >= 7
    assert client.stats.errors_by_kind["throttled"] == 2
