"""`/metrics` in Prometheus text format, protected by a bearer token (METRICS_TOKEN).

The figures are read from the database at scrape time by a custom collector, not counted in
process memory: web, workers and beat are separate processes (and machines), and the database
is where every one of them writes what happened. Apps add their own families with
`register_family()` (payments adds the write-back queue and webhook deliveries).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_families: list[Callable[[], Iterable[Metric]]] = []


def register_family(fn: Callable[[], Iterable[Metric]]) -> Callable[[], Iterable[Metric]]:
    _families.append(fn)
    return fn


@register_family
def sync_families():
    from sync.models import SyncRun

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


class _DatabaseCollector:
    def collect(self):
        for fn in _families:
            yield from fn()


@never_cache
def metrics_view(request):
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponse(
            "metrics need the bearer token (METRICS_TOKEN)\n", status=401, content_type="text/plain"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DatabaseCollector())
    return HttpResponse(
        generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8"
    )
