"""Payments' /metrics families (payments/metrics.py): write-back queue depth and age of the
oldest waiting row, attempts by outcome, webhook deliveries by outcome, Autotask errors."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from payments.models import PaymentSettings, WebhookEvent, WritebackAttempt, WritebackOutbox
from sync.models import SyncRun

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-123"


def scrape(client, settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return response.content.decode()


def outbox(partner, make_invoice, state, **kw):
    return WritebackOutbox.objects.create(
        partner=partner,
        invoice=make_invoice(partner),
        desired_paid_date=timezone.localdate(),
        state=state,
        **kw,
    )


def test_empty_queue_reports_zeroes(client, settings):
    text = scrape(client, settings)
    assert 'paysync_writeback_queue_depth{state="pending"} 0.0' in text
    assert "paysync_writeback_oldest_pending_age_seconds 0.0" in text
    assert "paysync_webhook_rejected_total 0.0" in text


def test_writeback_queue_depth_and_oldest_pending_age(
    client, settings, partner_a, partner_b, make_invoice
):
    start = timezone.now()
    with time_machine.travel(start - timedelta(seconds=90), tick=False):
        oldest = outbox(partner_a, make_invoice, "pending")
    with time_machine.travel(start - timedelta(seconds=10), tick=False):
        outbox(partner_b, make_invoice, "sending")
    with time_machine.travel(start - timedelta(hours=5), tick=False):
        outbox(partner_a, make_invoice, "parked")  # waits for ops, not in the age
        outbox(partner_a, make_invoice, "done")
    with time_machine.travel(start, tick=False):
        text = scrape(client, settings)
    assert 'paysync_writeback_queue_depth{state="pending"} 1.0' in text
    assert 'paysync_writeback_queue_depth{state="sending"} 1.0' in text
    assert 'paysync_writeback_queue_depth{state="parked"} 1.0' in text
    assert 'paysync_writeback_queue_depth{state="done"} 1.0' in text
    assert 'paysync_writeback_queue_depth{state="failed"} 0.0' in text
    assert "paysync_writeback_oldest_pending_age_seconds 90.0" in text
    assert oldest.state == "pending"


def test_attempts_and_autotask_errors_by_kind(client, settings, partner_a, make_invoice):
    row = outbox(partner_a, make_invoice, "pending")
    now = timezone.now()
    for outcome, kind in [("sent", ""), ("retry", "429"), ("retry", "429"), ("parked", "auth:x")]:
        WritebackAttempt.objects.create(
            partner=partner_a, outbox=row, version=1, outcome=outcome, error_kind=kind,
            started_at=now,
        )  # fmt: skip
    SyncRun.objects.create(
        partner=partner_a, kind="unpaid", trigger="schedule", status="failed", error_kind="429"
    )
    text = scrape(client, settings)
    assert 'paysync_writeback_attempts_total{error_kind="",outcome="sent"} 1.0' in text
    assert 'paysync_writeback_attempts_total{error_kind="429",outcome="retry"} 2.0' in text
    assert 'paysync_autotask_errors_total{kind="429",source="writeback"} 2.0' in text
    assert 'paysync_autotask_errors_total{kind="auth:x",source="writeback"} 1.0' in text
    assert 'paysync_autotask_errors_total{kind="429",source="sync"} 1.0' in text


def test_webhook_deliveries_by_outcome_and_rejections(client, settings, partner_a, partner_b):
    from payments.services import payment_settings

    s_a, _ = payment_settings.payment_settings_create(partner=partner_a)
    s_b, _ = payment_settings.payment_settings_create(partner=partner_b)
    PaymentSettings.objects.filter(pk=s_a.pk).update(rejected_count=3)
    PaymentSettings.objects.filter(pk=s_b.pk).update(rejected_count=4)
    for n, (status, reason) in enumerate(
        [("processed", ""), ("processed", ""), ("parked", "unknown_invoice"), ("invalid", "")]
    ):
        WebhookEvent.objects.create(
            partner=partner_a, settings=s_a, event_id=f"msg_{n}", body="{}",
            signed_at=timezone.now(), status=status, reason=reason,
        )  # fmt: skip
    text = scrape(client, settings)
    assert 'paysync_webhook_deliveries_total{outcome="processed",reason=""} 2.0' in text
    assert 'paysync_webhook_deliveries_total{outcome="parked",reason="unknown_invoice"} 1.0' in text
    assert 'paysync_webhook_deliveries_total{outcome="invalid",reason=""} 1.0' in text
    assert "paysync_webhook_rejected_total 7.0" in text


def test_payments_families_are_registered_once():
    from config import metrics
    from payments.metrics import payments_families

    assert metrics._families.count(payments_families) == 1
