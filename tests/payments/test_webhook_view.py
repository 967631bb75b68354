"""The webhook endpoint's contract (RELIABILITY §4): WH-2 negative matrix, answers, storage,
dedupe, parking and tenant binding (WH-9)."""

import json
import time

import pytest
from django.test import Client

from payments import webhooks
from payments.models import PaymentSettings, WebhookEvent
from payments.services import webhook_events

from .conftest import Sender, counts, event

pytestmark = pytest.mark.django_db


def process_all(partner):
    for pk in WebhookEvent.objects.filter(partner=partner, status="received").values_list(
        "pk", flat=True
    ):
        webhook_events.webhook_event_process(partner=partner, event_id=pk)


@pytest.fixture
def setup(partner_a, partner_b, endpoint_factory, make_invoice):
    settings_a, secret_a = endpoint_factory(partner_a)
    _settings_b, secret_b = endpoint_factory(partner_b)
    invoice = make_invoice(partner_a, total="100.00")
    return {
        "a": Sender(settings_a.endpoint_id, [secret_a]),
        "secret_a": secret_a,
        "secret_b": secret_b,
        "invoice": invoice,
        "settings_a": settings_a,
    }


def _body(invoice):
    return json.dumps(event("succeeded", "pay_1", invoice, "10.00")).encode()


def _case_headers(name, s, body):
    """(headers, body) for one row of the negative matrix."""
    now = int(time.time())
    sender = s["a"]
    good = sender.headers(body, event_id="msg_neg", ts=now)
    if name == "missing_id":
        good.pop("HTTP_WEBHOOK_ID")
    elif name == "missing_timestamp":
        good.pop("HTTP_WEBHOOK_TIMESTAMP")
    elif name == "missing_signature":
        good.pop("HTTP_WEBHOOK_SIGNATURE")
    elif name == "non_numeric_timestamp":
        good["HTTP_WEBHOOK_TIMESTAMP"] = "yesterday"
    elif name == "too_old":
        good = sender.headers(body, event_id="msg_neg", ts=now - 301)
    elif name == "too_new":
        good = sender.headers(body, event_id="msg_neg", ts=now + 301)
    elif name == "bad_signature":
        good["HTTP_WEBHOOK_SIGNATURE"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    elif name == "other_partners_secret":
        good = Sender("x", [s["secret_b"]]).headers(body, event_id="msg_neg", ts=now)
    elif name == "body_changed_by_one_byte":
        body = body[:-2] + b" }"
    elif name == "json_reserialised":
        body = json.dumps(json.loads(body), indent=2).encode()
    elif name == "only_unknown_version":
        good["HTTP_WEBHOOK_SIGNATURE"] = good["HTTP_WEBHOOK_SIGNATURE"].replace("v1,", "v1a,")
    elif name == "signature_not_base64":
        good["HTTP_WEBHOOK_SIGNATURE"] = "v1,@@@not-base64@@@"
    return good, body


NEGATIVE = [
    ("missing_id", 401),
    ("missing_timestamp", 401),
    ("missing_signature", 401),
    ("non_numeric_timestamp", 401),
    ("too_old", 401),
    ("too_new", 401),
    ("bad_signature", 401),
    ("other_partners_secret", 401),
    ("body_changed_by_one_byte", 401),
    ("json_reserialised", 401),
    ("only_unknown_version", 401),
    ("signature_not_base64", 401),
]


def test_negative_matrix_rejects_and_writes_nothing_but_the_counter(setup, partner_a):
    """WH-2. Kills: a past-only time check (too_new), a non-constant or wrong HMAC input."""
    body = _body(setup["invoice"])
    before = counts()
    invoice_before = type(setup["invoice"]).objects.filter(pk=setup["invoice"].pk).values().get()
    slow = []
    setup["a"].post_raw(body, {})  # warm-up (URL resolver, first decryption of the secret)
    for i, (name, expected) in enumerate(NEGATIVE, start=2):
        headers, sent = _case_headers(name, setup, body)
        started = time.perf_counter()
        response = setup["a"].post_raw(sent, headers)
        elapsed = time.perf_counter() - started
        assert response.status_code == expected, (name, response.status_code, response.content)
        assert counts() == before, name
        settings_a = PaymentSettings.objects.get(pk=setup["settings_a"].pk)
        assert settings_a.rejected_count == i, name
        if elapsed > 0.05:
            slow.append((name, elapsed))
    assert slow == []
    assert type(setup["invoice"]).objects.filter(pk=setup["invoice"].pk).values().get() == (
        invoice_before
    )


@pytest.mark.parametrize("offset", [-299, 299])
def test_timestamps_just_inside_the_tolerance_pass(setup, offset):
    body = _body(setup["invoice"])
    r = setup["a"].send(body, ts=int(time.time()) + offset)
    assert r.status_code == 202


def test_several_signatures_one_valid_passes(setup):
    body = _body(setup["invoice"])
    headers = setup["a"].headers(body, event_id="msg_multi")
    headers["HTTP_WEBHOOK_SIGNATURE"] = (
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v2,xyz "
        + headers["HTTP_WEBHOOK_SIGNATURE"]
    )
    assert setup["a"].post_raw(body, headers).status_code == 202


def test_secret_with_or_without_prefix_signs_the_same(setup):
    bare = Sender(setup["a"].endpoint_id, [setup["secret_a"].removeprefix("whsec_")])
    assert bare.send(_body(setup["invoice"])).status_code == 202


def test_body_over_64_kib_is_413_and_nothing_is_stored(setup):
    before = counts()
    body = b'{"pad": "' + b"x" * (64 * 1024) + b'"}'
    r = setup["a"].send(body)
    assert r.status_code == 413
    assert counts() == before


def test_valid_signature_malformed_json_is_400_and_kept_raw(setup, partner_a):
    r = setup["a"].send(b'{"type": "payment.succeeded", "data": ', event_id="msg_bad_json")
    assert r.status_code == 400
    row = WebhookEvent.objects.get(partner=partner_a, event_id="msg_bad_json")
    assert (row.status, row.reason) == ("invalid", "malformed")
    assert row.body == '{"type": "payment.succeeded", "data": '
    assert counts()["payments"] == 0


def test_valid_signature_unknown_event_type_is_acknowledged_and_kept_as_ignored(setup, partner_a):
    # 2xx: Standard Webhooks senders retry non-2xx for days (issue 18).
    r = setup["a"].send({"type": "payment.exploded", "data": {}}, event_id="msg_unknown")
    assert r.status_code == 200 and r.json()["ignored"] is True
    row = WebhookEvent.objects.get(partner=partner_a, event_id="msg_unknown")
    assert (row.status, row.reason) == ("ignored", "unknown_type")


def test_new_event_is_202_stored_raw_then_processed_into_a_payment(setup, partner_a):
    body = _body(setup["invoice"])
    r = setup["a"].send(body, event_id="msg_new")
    assert r.status_code == 202
    row = WebhookEvent.objects.get(partner=partner_a, event_id="msg_new")
    assert row.status == "received" and row.body == body.decode()
    assert counts()["payments"] == 0  # processed by the task, not in the request
    process_all(partner_a)
    row.refresh_from_db()
    assert row.status == "processed" and row.payment.amount == 10
    inv = setup["invoice"]
    inv.refresh_from_db()
    assert (inv.paid_here, inv.outstanding, inv.status) == (10, 90, "partially_paid")


def test_duplicate_event_id_is_200_and_adds_nothing(setup, partner_a):
    body = _body(setup["invoice"])
    assert setup["a"].send(body, event_id="msg_dup").status_code == 202
    process_all(partner_a)
    before = counts()
    for _ in range(3):
        r = setup["a"].send(body, event_id="msg_dup")
        assert r.status_code == 200 and r.json()["duplicate"] is True
    assert counts() == before


def test_unknown_endpoint_is_404_never_410(setup):
    r = Sender("ep_doesnotexist", [setup["secret_a"]]).send(_body(setup["invoice"]))
    assert r.status_code == 404


def test_get_is_405(setup):
    assert Client().get(setup["a"].url).status_code == 405


def test_no_csrf_and_no_session_needed_even_when_logged_in(setup, user_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_a)
    sender = Sender(setup["a"].endpoint_id, [setup["secret_a"]], client=client)
    assert sender.send(_body(setup["invoice"])).status_code == 202


def test_event_naming_another_partners_invoice_is_parked_and_changes_nothing(
    setup, partner_a, partner_b, make_invoice
):
    """WH-9: A's endpoint naming B's invoice → 2xx, parked as foreign, B unchanged."""
    invoice_b = make_invoice(partner_b, total="50.00")
    before = type(invoice_b).objects.filter(pk=invoice_b.pk).values().get()
    r = setup["a"].send(event("succeeded", "pay_x", invoice_b, "50.00"), event_id="msg_foreign")
    assert r.status_code == 202
    process_all(partner_a)
    row = WebhookEvent.objects.get(event_id="msg_foreign")
    assert (row.partner_id, row.status, row.reason) == (partner_a.pk, "parked", "foreign_invoice")
    assert type(invoice_b).objects.filter(pk=invoice_b.pk).values().get() == before
    assert counts()["payments"] == 0


@pytest.mark.parametrize(
    "change,reason",
    [
        ("unknown", "unknown_invoice"),
        ("archived", "archived_invoice"),
        ("too_much", "amount_exceeds_outstanding"),
        ("currency", "currency_mismatch"),
        ("void", "void_invoice"),
    ],
)
def test_unusable_events_are_accepted_and_parked_with_their_reason(
    setup, partner_a, change, reason
):
    invoice = setup["invoice"]
    ev = event("succeeded", "pay_p", invoice, "10.00")
    if change == "unknown":
        ev["data"]["invoice_id"] = 987654321
    elif change == "archived":
        type(invoice).objects.filter(pk=invoice.pk).update(archived_at="2026-01-05T00:00:00Z")
    elif change == "too_much":
        ev["data"]["amount"] = "100.01"
    elif change == "currency":
        ev["data"]["currency"] = "EUR"
    elif change == "void":
        type(invoice).objects.filter(pk=invoice.pk).update(voided=True)
    before = type(invoice).objects.filter(pk=invoice.pk).values().get()
    assert setup["a"].send(ev).status_code == 202
    process_all(partner_a)
    row = WebhookEvent.objects.get(partner=partner_a)
    assert (row.status, row.reason) == ("parked", reason)
    assert type(invoice).objects.filter(pk=invoice.pk).values().get() == before
    assert counts()["payments"] == 0


def test_invoice_may_be_named_by_its_shown_number(setup, partner_a):
    invoice = setup["invoice"]
    ev = event("succeeded", "pay_n", None, "100.00", invoice_number=invoice.number)
    assert setup["a"].send(ev).status_code == 202
    process_all(partner_a)
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_parked_event_is_rematched_when_the_invoice_becomes_known(setup, partner_a):
    invoice = setup["invoice"]
    ev = event("succeeded", "pay_late", None, "10.00", invoice_number="INV-NOT-YET")
    setup["a"].send(ev)
    process_all(partner_a)
    assert WebhookEvent.objects.get(partner=partner_a).status == "parked"
    type(invoice).objects.filter(pk=invoice.pk).update(number="INV-NOT-YET")
    # what the after-sync hook enqueues: the same processing for each parked event
    for pk in WebhookEvent.objects.filter(status="parked").values_list("pk", flat=True):
        webhook_events.webhook_event_process(partner=partner_a, event_id=pk)
    invoice.refresh_from_db()
    assert invoice.paid_here == 10
    assert WebhookEvent.objects.get(partner=partner_a).status == "processed"


def test_signature_never_in_response_or_event_row(setup, partner_a):
    r = setup["a"].send(_body(setup["invoice"]), event_id="msg_s")
    assert setup["secret_a"] not in r.content.decode()
    row = WebhookEvent.objects.filter(partner=partner_a).values().get()
    assert setup["secret_a"] not in json.dumps(row, default=str)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT secret FROM payments_paymentsettings WHERE partner_id = %s", [partner_a.pk]
        )
        stored = cur.fetchone()[0]
    assert stored.startswith("v1:") and "whsec_" not in stored


def test_secret_key_helper_registers_the_secret_for_log_masking(setup):
    from config.logging import mask_secrets

    webhooks.secret_key(setup["secret_a"])
    assert setup["secret_a"] not in mask_secrets(f"oops {setup['secret_a']}")


@pytest.mark.django_db(transaction=True)
def test_an_acknowledgement_does_not_wait_for_an_event_being_processed(
    partner_a, sender_for, make_invoice, monkeypatch
):
    """The task locks its event row, not the endpoint's settings row: a delivery's INSERT
    (whose foreign-key check takes FOR KEY SHARE on that row) must not queue behind it."""
    import threading

    from django.db import connection

    from payments import tasks

    monkeypatch.setattr(tasks.process_webhook_event, "delay", lambda *a, **k: None)
    sender, invoice = sender_for(partner_a), make_invoice(partner_a)
    assert sender.send(event("succeeded", "pay_1", invoice)).status_code == 202
    event_id = WebhookEvent.objects.get().pk
    holding, release = threading.Event(), threading.Event()
    original = webhook_events._advisory_lock

    def lock_and_hold(partner_id, key):  # called with the event row locked
        original(partner_id, key)
        holding.set()
        release.wait(10)

    monkeypatch.setattr(webhook_events, "_advisory_lock", lock_and_hold)

    def process():
        try:
            webhook_events.webhook_event_process(partner=partner_a, event_id=event_id)
        finally:
            connection.close()

    worker = threading.Thread(target=process)
    worker.start()
    try:
        assert holding.wait(10)
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")  # waiting would fail, not hang
        answer = sender.send(event("succeeded", "pay_2", invoice))
    finally:
        release.set()
        worker.join(10)
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = 0")
    assert answer.status_code == 202
    assert WebhookEvent.objects.count() == 2
    assert WebhookEvent.objects.get(pk=event_id).status == WebhookEvent.Status.PROCESSED
