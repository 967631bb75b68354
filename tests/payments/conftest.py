"""Fixtures for payments: invoices, webhook endpoints and a Standard Webhooks sender."""

from __future__ import annotations

import itertools
import json
import time
import uuid

import pytest
from django.test import Client

from invoices.models import Invoice
from payments import webhooks
from payments.models import Payment, PaymentSettings, WebhookEvent, WritebackOutbox
from payments.services import payment_settings
from sync.models import SyncRun


@pytest.fixture
def endpoint_factory(db):
    def make(partner) -> tuple[PaymentSettings, str]:
        s, secret = payment_settings.payment_settings_create(partner=partner)
        assert secret is not None
        return s, secret

    return make


class Sender:
    """A processor: signs bodies with its secret(s) and posts them to an endpoint."""

    def __init__(self, endpoint_id: str, secrets: list[str], client: Client | None = None):
        self.endpoint_id = endpoint_id
        self.secrets = secrets
        self.client = client or Client(enforce_csrf_checks=True)
        self._n = itertools.count(1)

    @property
    def url(self) -> str:
        return f"/api/v1/payments/webhooks/{self.endpoint_id}/"

    def headers(self, body: bytes, *, event_id: str, ts: int | None = None) -> dict:
        ts = int(time.time()) if ts is None else ts
        sigs = " ".join(webhooks.signature_header(s, event_id, ts, body) for s in self.secrets)
        return {
            "HTTP_WEBHOOK_ID": event_id,
            "HTTP_WEBHOOK_TIMESTAMP": str(ts),
            "HTTP_WEBHOOK_SIGNATURE": sigs,
        }

    def post_raw(self, body: bytes, headers: dict):
        return self.client.generic(
            "POST", self.url, body, content_type="application/json", **headers
        )

    def send(self, event: dict | bytes, *, event_id: str | None = None, ts: int | None = None):
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        event_id = event_id or f"msg_{next(self._n)}_{uuid.uuid4().hex}"
        return self.post_raw(body, self.headers(body, event_id=event_id, ts=ts))


def event(kind: str, payment_id: str, invoice, amount="10.00", version=0, **data) -> dict:
    body = {
        "payment_id": payment_id,
        "amount": str(amount),
        "currency": "USD",
        "method": "card",
        "version": version,
        **data,
    }
    if invoice is not None and "invoice_id" not in data and "invoice_number" not in data:
        body["invoice_id"] = invoice.pk
    return {"type": f"payment.{kind}", "data": body}


@pytest.fixture
def sender_for(endpoint_factory):
    def make(partner) -> Sender:
        s, secret = endpoint_factory(partner)
        return Sender(s.endpoint_id, [secret])

    return make


def counts() -> dict:
    return {
        "events": WebhookEvent.objects.count(),
        "payments": Payment.objects.count(),
        "outbox": WritebackOutbox.objects.count(),
    }


@pytest.fixture
def synced(partner_a, connect, run_now, autotask_sandbox):
    run = run_now(connect(partner_a).first_run)
    assert run.status == "succeeded", run.error_message
    open_invoices = list(
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id")
    )
    assert len(open_invoices) >= 3
    return autotask_sandbox.db, open_invoices


@pytest.fixture
def unpaid_run(partner_a, run_now, new_run):
    """Fetch Unpaid (the daily run), to its end in this process."""

    def run() -> SyncRun:
        done = run_now(new_run(partner_a, SyncRun.Kind.UNPAID, trigger=SyncRun.Trigger.OPS))
        assert done.status == SyncRun.Status.SUCCEEDED, (done.error_kind, done.error_message)
        return done

    return run
