"""Payments' families for `/metrics` (config/metrics.py): the write-back queue, webhook
deliveries, Autotask errors by kind, and the drift report's entries by reason. Read from the
database at scrape time, like the sync families, so every web and worker process reports the
same figures."""

from __future__ import annotations

from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from config.metrics import register_family
from sync.models import SyncRun

from .models import (
    PaymentSettings,
    ReconciliationDrift,
    WebhookEvent,
    WritebackAttempt,
    WritebackOutbox,
)
from .selectors import FAILED_STATES, PENDING_STATES, REASONS, WRITEBACK_FAILED, WRITEBACK_PENDING

WAITING = ("pending", "sending")
STATES = ("pending", "sending", "parked", "failed", "cancelled", "done")


@register_family
def payments_families():
    depth = GaugeMetricFamily(
        "paysync_writeback_queue_depth", "Write-back outbox rows by state", labels=["state"]
    )
    by_state = dict(WritebackOutbox.objects.values_list("state").annotate(n=Count("id")).order_by())
    for state in STATES:
        depth.add_metric([state], by_state.get(state, 0))

    oldest = GaugeMetricFamily(
        "paysync_writeback_oldest_pending_age_seconds",
        "Age of the oldest pending or sending write-back, from when its desired paidDate "
        "last changed (0 when none is waiting)",
    )
    since = WritebackOutbox.objects.filter(state__in=WAITING).aggregate(t=Min("updated_at"))["t"]
    oldest.add_metric([], max(0.0, (timezone.now() - since).total_seconds()) if since else 0.0)

    attempts = CounterMetricFamily(
        "paysync_writeback_attempts",
        "Write-back PATCH attempts by outcome and error kind",
        labels=["outcome", "error_kind"],
    )
    for row in (
        WritebackAttempt.objects.values("outcome", "error_kind").annotate(n=Count("id")).order_by()
    ):
        attempts.add_metric([row["outcome"], row["error_kind"]], row["n"])

    deliveries = CounterMetricFamily(
        "paysync_webhook_deliveries",
        "Stored (signature verified) webhook deliveries by outcome and reason",
        labels=["outcome", "reason"],
    )
    for row in WebhookEvent.objects.values("status", "reason").annotate(n=Count("id")).order_by():
        deliveries.add_metric([row["status"], row["reason"]], row["n"])
    rejected = CounterMetricFamily(
        "paysync_webhook_rejected", "Webhook deliveries rejected (signature, time, size)"
    )
    total = PaymentSettings.objects.aggregate(n=Sum("rejected_count"))["n"]
    rejected.add_metric([], total or 0)

    errors = CounterMetricFamily(
        "paysync_autotask_errors",
        "Autotask errors recorded by sync runs and write-back attempts, by kind",
        labels=["source", "kind"],
    )
    runs = SyncRun.objects.exclude(error_kind="").values("error_kind").annotate(n=Count("id"))
    for row in runs.order_by():
        errors.add_metric(["sync", row["error_kind"]], row["n"])
    failed = WritebackAttempt.objects.exclude(error_kind="").values("error_kind")
    for row in failed.annotate(n=Count("id")).order_by():
        errors.add_metric(["writeback", row["error_kind"]], row["n"])

    drift = GaugeMetricFamily(
        "paysync_reconciliation_drift_open",
        "Entries of the drift report, every partner's, by reason: open reconciliation drift, "
        "write-backs parked or failed (writeback_failed) and pending or sending "
        "(writeback_pending)",
        labels=["reason"],
    )
    open_by_reason = dict(
        ReconciliationDrift.objects.filter(resolved_at__isnull=True)
        .values_list("reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    open_by_reason[WRITEBACK_FAILED] = sum(by_state.get(s, 0) for s in FAILED_STATES)
    open_by_reason[WRITEBACK_PENDING] = sum(by_state.get(s, 0) for s in PENDING_STATES)
    for reason in REASONS:
        drift.add_metric([reason], open_by_reason.get(reason, 0))
    return [depth, oldest, attempts, deliveries, rejected, errors, drift]
