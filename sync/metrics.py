"""The sync's families for `/metrics` (config/metrics.py): runs by kind and status, rows
written, Autotask requests used, errors by kind, queue latency. Registered from
SyncConfig.ready(); read from the database at scrape time."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from config.metrics import register_family

from .models import SyncRun


@register_family
def sync_families():
    runs = CounterMetricFamily(
        "paysync_sync_runs", "Sync runs by kind and status", labels=["kind", "status"]
    )
    rows = CounterMetricFamily(
        "paysync_sync_rows", "Rows written by syncs", labels=["kind", "outcome"]
    )
    requests = CounterMetricFamily(
        "paysync_autotask_requests", "Autotask requests used by syncs", labels=["kind"]
    )
    errors = CounterMetricFamily(
        "paysync_sync_errors", "Failed or retried sync runs by error kind", labels=["error_kind"]
    )
    for row in SyncRun.objects.values("kind", "status").annotate(n=Count("id")):
        runs.add_metric([row["kind"], row["status"]], row["n"])
    totals = SyncRun.objects.values("kind").annotate(
        created=Sum("created"),
        updated=Sum("updated"),
        unchanged=Sum("unchanged"),
        skipped=Sum("skipped"),
        failed=Sum("failed"),
        requests=Sum("requests_used"),
    )
    for row in totals:
        for outcome in ("created", "updated", "unchanged", "skipped", "failed"):
            rows.add_metric([row["kind"], outcome], row[outcome] or 0)
        requests.add_metric([row["kind"]], row["requests"] or 0)
    for row in SyncRun.objects.exclude(error_kind="").values("error_kind").annotate(n=Count("id")):
        errors.add_metric([row["error_kind"]], row["n"])
    latency = GaugeMetricFamily(
        "paysync_sync_queue_latency_seconds",
        "Seconds from queued to started, average over runs started in the last hour",
    )
    recent = SyncRun.objects.filter(
        started_at__gte=timezone.now() - timedelta(hours=1)
    ).values_list("created_at", "started_at")
    waits = [(s - c).total_seconds() for c, s in recent if s and c]
    latency.add_metric([], sum(waits) / len(waits) if waits else 0.0)
    queued = GaugeMetricFamily(
        "paysync_sync_runs_active", "Runs queued or running", labels=["status"]
    )
    for status in ("queued", "running"):
        queued.add_metric([status], SyncRun.objects.filter(status=status).count())
    return [runs, rows, requests, errors, latency, queued]
