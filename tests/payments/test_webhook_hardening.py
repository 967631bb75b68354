"""Issue 18 items 3, 4 and 6: signed payloads that broke the endpoint (impossible dates, NUL,
wrong types) answer 400 and are kept for ops; unknown types are acknowledged and ignored;
processing failures are bounded, then parked for ops (never re-queued); chunked bodies are
read; a new secret never waits in the session; partners never learn another tenant's ids."""

import io
import json
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from partners.models import User
from payments import tasks, webhooks
from payments.metrics import payments_families
from payments.models import Payment, WebhookEvent
from payments.services import webhook_events

from .conftest import Sender, event
from .test_task_config import broker  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(partner_a, partner_b, endpoint_factory, make_invoice):
    settings_a, secret_a = endpoint_factory(partner_a)
    return {
        "sender": Sender(settings_a.endpoint_id, [secret_a]),
        "invoice": make_invoice(partner_a, total="100.00"),
        "foreign": make_invoice(partner_b, total="100.00"),
    }


def stored(partner, event_id) -> WebhookEvent:
    return WebhookEvent.objects.get(partner=partner, event_id=event_id)


def good(world, **data) -> dict:
    return event("succeeded", "pay_1", world["invoice"], "10.00", **data)


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("impossible_date", lambda e: e["data"].update(occurred_at="2026-02-30T00:00:00Z")),
        ("year_zero_in_utc", lambda e: e["data"].update(occurred_at="0001-01-01T00:00:00+01:00")),
        ("nul_in_payment_id", lambda e: e["data"].update(payment_id="pay\u00001")),
        ("nul_in_invoice_number", lambda e: e["data"].update(invoice_number="INV\u00001")),
        ("nul_in_a_key", lambda e: e["data"].update({"x\u0000": 1})),
        ("nul_in_type", lambda e: e.update(type="payment.succeeded\u0000")),
        ("lone_surrogate", lambda e: e["data"].update(payment_id="pay\ud800")),
        ("amount_is_a_list", lambda e: e["data"].update(amount=["1"])),
        ("method_is_an_object", lambda e: e["data"].update(method={"a": 1})),
        ("type_is_a_number", lambda e: e.update(type=3)),
        ("invoice_id_beyond_bigint", lambda e: e["data"].update(invoice_id=2**63)),
        ("version_is_text", lambda e: e["data"].update(version="3")),
    ],
)
def test_malformed_signed_events_are_400_with_a_reason_and_kept_for_ops(
    world, partner_a, name, mutate
):
    body = good(world)
    mutate(body)
    raw = json.dumps(body).encode()  # ensure_ascii: NUL travels escaped as \u0000
    response = world["sender"].send(raw, event_id=f"msg_{name}")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "malformed" and response.json()["detail"]
    row = stored(partner_a, f"msg_{name}")
    assert row.status == "invalid" and row.reason == "malformed" and row.detail
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("raw_nul_in_a_string", b'{"type": "payment.succeeded", "data": {"payment_id": "p\x001"}}'),
        ("raw_nul_outside", b'{"type": "payment.succeeded"}\x00'),
        ("deep_nesting", b"[" * 20000 + b"]" * 20000),
        ("not_utf8", b'{"type": "\xff\xfe"}'),
    ],
)
def test_malformed_bytes_are_400_and_stored_without_nul(world, partner_a, name, raw):
    response = world["sender"].send(raw, event_id=f"msg_{name}")
    assert response.status_code == 400, response.content
    row = stored(partner_a, f"msg_{name}")
    assert row.status == "invalid" and "\x00" not in row.body


@pytest.mark.parametrize("kind", ["payment.created", "invoice.paid"])
def test_unknown_event_types_are_acknowledged_stored_as_ignored_and_counted(world, partner_a, kind):
    body = {"type": kind, "data": {"id": "x"}}
    first = world["sender"].send(body, event_id=f"msg_{kind}")
    again = world["sender"].send(body, event_id=f"msg_{kind}")
    assert first.status_code == 200 and first.json()["ignored"] is True
    assert again.status_code == 200 and again.json()["duplicate"] is True
    row = stored(partner_a, f"msg_{kind}")
    assert (row.status, row.reason, row.event_type) == ("ignored", "unknown_type", kind)
    # Not processed: the stale-event pass leaves it alone too.
    assert webhook_events.webhook_events_requeue_stale(older_than=timedelta(0)) == 0
    families = {f.name: f for f in payments_families()}
    samples = {
        tuple(s.labels.values()): s.value
        for s in families["paysync_webhook_deliveries"].samples
        if s.name.endswith("_total")
    }
    assert samples[("ignored", "unknown_type")] == 1


def _boom(*args, **kwargs):
    raise RuntimeError("processing bug \x00 here")


@pytest.mark.usefixtures("broker")  # retries are recorded, not published (test_task_config.py)
def test_processing_failures_are_bounded_then_parked_for_ops_and_never_requeued(
    world, partner_a, monkeypatch
):
    response = world["sender"].send(good(world), event_id="msg_fails")
    assert response.status_code == 202
    row = stored(partner_a, "msg_fails")
    monkeypatch.setattr(webhook_events, "_apply_processor_event", _boom)
    results = []
    for _ in range(webhook_events.MAX_PROCESSING_FAILURES + 3):
        # The task, as a worker runs it: retries until the bound, then "failed".
        tasks.process_webhook_event.push_request(
            id="t", args=[partner_a.id, row.pk], kwargs={}, retries=0, called_directly=False
        )
        try:
            results.append(tasks.process_webhook_event.run(partner_a, row.pk))
        except Exception as exc:  # celery.exceptions.Retry
            results.append(type(exc).__name__)
        finally:
            tasks.process_webhook_event.pop_request()
    row.refresh_from_db()
    bound = webhook_events.MAX_PROCESSING_FAILURES
    assert results[: bound - 1] == ["Retry"] * (bound - 1)
    assert results[bound - 1] == "failed"
    # Past the bound the event is not processed again (returned as it is, nothing counted).
    assert results[bound:] == ["failed"] * 3
    assert (row.status, row.reason, row.failures, row.attempts) == (
        "failed",
        "processing_error",
        bound,
        bound,
    )
    assert "processing bug" in row.last_error and "\x00" not in row.last_error
    assert "processing bug" in row.detail
    # The stale-event pass and the after-sync re-match never take a failed event.
    assert webhook_events.webhook_events_requeue_stale(older_than=timedelta(0)) == 0
    assert webhook_events.webhook_events_rematch(partner=partner_a) == 0
    assert Payment.objects.count() == 0

    # Visible to ops in the admin, and retryable there once the bug is fixed.
    monkeypatch.undo()
    ops = User.objects.create_superuser("ops-wh", "ops@paysync.test", "x")
    admin = Client()
    admin.force_login(ops)
    listing = admin.get("/admin/payments/webhookevent/?status__exact=failed").content.decode()
    assert "msg_fails" in listing
    page = admin.get(f"/admin/payments/webhookevent/{row.pk}/change/").content.decode()
    assert "processing bug" in page
    admin.post(
        "/admin/payments/webhookevent/",
        {"action": "reprocess", "_selected_action": [row.pk]},
    )
    row.refresh_from_db()
    assert (row.status, row.failures) == ("processed", 0)
    assert Payment.objects.filter(partner=partner_a).count() == 1


def test_a_chunked_body_without_content_length_is_read(world, partner_a):
    sender = world["sender"]
    body = json.dumps(good(world)).encode()
    headers = sender.headers(body, event_id="msg_chunked")
    response = sender.client.generic(
        "POST",
        sender.url,
        b"",
        content_type="application/json",
        CONTENT_LENGTH="",  # as gunicorn presents a chunked request
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
        **headers,
    )
    assert response.status_code == 202, response.content
    assert stored(partner_a, "msg_chunked").status == "received"


def test_a_chunked_body_over_the_limit_is_413(world, partner_a):
    sender = world["sender"]
    body = b" " * (webhooks.MAX_BODY_BYTES + 10)
    headers = sender.headers(body, event_id="msg_big")
    response = sender.client.generic(
        "POST",
        sender.url,
        b"",
        content_type="application/json",
        CONTENT_LENGTH="",
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
        **headers,
    )
    assert response.status_code == 413
    assert not WebhookEvent.objects.filter(partner=partner_a).exists()


def test_a_new_secret_is_shown_on_the_answer_and_never_kept_in_the_session(client_a, partner_a):
    for action in ("create", "rotate"):
        response = client_a.post("/payments/settings/", {"action": action})
        assert response.status_code == 200
        secret = response.content.decode().split('id="new-secret">')[1].split("<")[0]
        assert secret.startswith("whsec_")
        for session in Session.objects.all():
            assert secret not in json.dumps(session.get_decoded())
            assert "whsec_" not in session.session_data
        assert secret not in client_a.get("/payments/settings/").content.decode()


def test_deliveries_say_unknown_invoice_for_another_partners_id(world, partner_a, client_a):
    sender = world["sender"]
    sender.send(event("succeeded", "pay_f", None, invoice_id=world["foreign"].pk), event_id="f1")
    sender.send(
        event("succeeded", "pay_u", None, invoice_id=world["foreign"].pk + 1000), event_id="u1"
    )
    for pk in WebhookEvent.objects.filter(partner=partner_a).values_list("pk", flat=True):
        webhook_events.webhook_event_process(partner=partner_a, event_id=pk)
    assert stored(partner_a, "f1").reason == "foreign_invoice"  # ops' truth
    assert stored(partner_a, "u1").reason == "unknown_invoice"
    page = client_a.get("/payments/settings/").content.decode()
    assert "Another partner" not in page
    table = page.split('id="deliveries"')[1].split("</table>")[0]
    outcome = {
        row.split("<code>")[1].split("</code>")[0]: row.rsplit("<td>", 1)[1].split("</tr>")[0]
        for row in table.split("<tr>")
        if "<code>" in row
    }
    # The same outcome, word for word, for another partner's id and one that does not exist.
    assert "Unknown invoice" in outcome["f1"]
    assert outcome["f1"] == outcome["u1"]
    # Ops still see the real reason.
    ops = User.objects.create_superuser("ops-f", "opsf@paysync.test", "x")
    admin = Client()
    admin.force_login(ops)
    page = admin.get(f"/admin/payments/webhookevent/{stored(partner_a, 'f1').pk}/change/")
    assert "Another partner" in page.content.decode()
