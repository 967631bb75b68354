"""Issue 18 item 3, done-when: Hypothesis signs arbitrary JSON and byte bodies with the real
signer (the `standardwebhooks` package, independent of ours) and posts them, with a
Content-Length or chunked, to the endpoint served by gunicorn on this test's database.

Every answer is below 500; every delivery answered 200/202/400 is stored with its status
(invalid, ignored, received); each received event is then processed here as a worker would
(processed or parked, never an exception, at most MAX_PROCESSING_FAILURES attempts); parked
events are visible to ops in the admin. ~300 examples, bounded in time (a few seconds of
gunicorn start, ~10 ms an example)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import requests
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from partners.models import User
from payments import webhooks
from payments.models import WebhookEvent
from payments.services import payment_settings, webhook_events
from tests.harness.gunicorn import Gunicorn
from tests.harness.workers import worker_environment

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 300
STORED_AS = {202: {"received"}, 200: {"ignored"}, 400: {"invalid"}}


@pytest.fixture
def live(partner_a, partner_b, make_invoice, tmp_path):
    endpoint, secret = payment_settings.payment_settings_create(partner=partner_a)
    mine = make_invoice(partner_a, total="100.00")
    foreign = make_invoice(partner_b, total="100.00")
    # No sandbox: nothing on the webhook path talks to Autotask.
    env = worker_environment(SimpleNamespace(zone_lookup_url="http://127.0.0.1:9/"))
    env["LOG_LEVEL"] = "WARNING"
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=1)
    try:
        server.start()
        yield SimpleNamespace(
            url=f"{server.base_url}/api/v1/payments/webhooks/{endpoint.endpoint_id}/",
            signer=Webhook(secret),
            mine=mine,
            foreign=foreign,
            log=tmp_path / "gunicorn.log",
        )
    finally:
        server.stop()
        from config.celery import app

        app.control.purge()  # the process messages no worker took


def json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )


def maybe(valid, junk_one_in: int = 8):
    """Mostly a valid value, sometimes anything: the parser's every branch is reached, and
    enough events are valid to be stored and processed."""
    return st.integers(1, junk_one_in).flatmap(lambda n: json_values() if n == 1 else valid)


@st.composite
def event_bodies(draw, mine_pk: int, foreign_pk: int) -> bytes:
    # A third of the bodies are clean events (stored and processed: paid, parked, tombstones),
    # the others have junk anywhere.
    clean = draw(st.integers(0, 2)) == 0

    def pick(valid, junk_too=None):
        if clean:
            return draw(valid)
        return draw(maybe(valid if junk_too is None else st.one_of(valid, valid, junk_too)))

    y, m, d = draw(st.integers(0, 10000)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
    dates = st.sampled_from([f"{y:04d}-{m:02d}-{d:02d}T00:00:00Z", "2026-02-30T00:00:00Z"])
    valid_time = st.sampled_from([None, "2026-01-02T03:04:05+01:00", "2026-03-01T00:00:00Z"])
    data = {
        "payment_id": pick(
            st.from_regex(r"pay_[a-z0-9]{1,8}", fullmatch=True), st.text(max_size=30)
        ),
        "amount": pick(st.sampled_from(["10.00", "0.01", "100.00", "1e3", 5]), st.just("-1")),
        "currency": pick(st.sampled_from(["USD", "usd", ""]), st.just("EUR")),
        "method": pick(st.sampled_from(["card", "ach", "other"])),
        "occurred_at": pick(valid_time, dates),
        "version": pick(st.integers(0, 5)),
    }
    which = draw(st.sampled_from(["id", "id", "number", "both"] + ([] if clean else ["none"])))
    if which in ("id", "both"):
        data["invoice_id"] = pick(
            st.sampled_from([mine_pk, mine_pk, foreign_pk, foreign_pk + 10**6]), st.integers()
        )
    if which in ("number", "both"):
        data["invoice_number"] = pick(st.sampled_from(["INV-1", "nope"]), st.text(max_size=20))
    types = ["payment.succeeded", "payment.refunded", "payment.deleted"]
    kind = pick(st.sampled_from(types), st.sampled_from(["payment.created", "invoice.paid"]))
    doc = {"type": kind, "data": pick(st.just(data))}
    body = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True).encode(
        "utf-8", errors="surrogatepass"
    )
    if not clean and draw(st.integers(0, 9)) == 0:  # a raw byte (NUL, invalid UTF-8, …)
        at = draw(st.integers(0, len(body)))
        body = (
            body[:at] + draw(st.sampled_from([b"\x00", b"\xff", b"\x01", b"\\u0000"])) + body[at:]
        )
    return body


def bodies(mine_pk: int, foreign_pk: int):
    return st.one_of(
        event_bodies(mine_pk, foreign_pk),
        event_bodies(mine_pk, foreign_pk),
        st.binary(max_size=300),
    )


def test_no_signed_payload_breaks_the_endpoint(live, partner_a, partner_b):
    session = requests.Session()
    answers: dict[int, int] = {}
    delivered: list[tuple[str, int]] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies(live.mine.pk, live.foreign.pk), chunked=st.booleans())
    def deliver(body: bytes, chunked: bool):
        msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": live.signer.sign(msg_id, now, body),
            "content-type": "application/json",
        }
        # A generator body makes requests send it chunked (no Content-Length).
        data = iter([body]) if chunked else body
        response = session.post(live.url, data=data, headers=headers, timeout=30)
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.text, live.log.read_text()[-2000:])
        assert response.status_code in STORED_AS, (body, response.status_code, response.text)
        row = WebhookEvent.objects.get(partner=partner_a, event_id=msg_id)
        assert row.status in STORED_AS[response.status_code], (body, row.status)
        if response.status_code == 400:
            assert response.json()["code"] and row.reason and row.detail
        delivered.append((msg_id, response.status_code))

    deliver()
    assert len(delivered) == EXAMPLES and sum(answers.values()) == EXAMPLES
    print("webhook fuzz answers:", dict(sorted(answers.items())))
    # Every path was really exercised: stored for processing, ignored, refused as malformed.
    assert answers.get(202, 0) >= 20 and 200 in answers and 400 in answers, answers

    # Process every received event as the worker would: never an exception, never beyond the
    # bound, and a delivery for another partner's invoice never touches it.
    for pk in WebhookEvent.objects.filter(partner=partner_a, status="received").values_list(
        "pk", flat=True
    ):
        webhook_events.webhook_event_process(partner=partner_a, event_id=pk)
    rows = WebhookEvent.objects.filter(partner=partner_a)
    assert rows.count() == EXAMPLES
    assert not rows.filter(status__in=["received", "failed"]).exists()
    assert max(rows.values_list("attempts", flat=True)) <= webhook_events.MAX_PROCESSING_FAILURES
    live.foreign.refresh_from_db()
    assert live.foreign.paid_here == 0
    assert not WebhookEvent.objects.filter(partner=partner_b).exists()

    # Parked events are visible to ops in the admin.
    parked = list(rows.filter(status="parked").values_list("event_id", flat=True)[:5])
    if parked:
        ops = User.objects.create_superuser("ops-fuzz", "ops-fuzz@paysync.test", "x")
        admin = Client()
        admin.force_login(ops)
        page = admin.get("/admin/payments/webhookevent/?status__exact=parked").content.decode()
        assert all(event_id in page for event_id in parked)


def test_a_chunked_body_over_the_limit_is_413_on_gunicorn(live, partner_a):
    body = b" " * (webhooks.MAX_BODY_BYTES + 1)
    msg_id = "msg_big_chunked"
    now = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": live.signer.sign(msg_id, now, body),
    }
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
    response = requests.post(live.url, data=chunks, headers=headers, timeout=30)
    assert response.status_code == 413
    assert not WebhookEvent.objects.filter(partner=partner_a).exists()
