"""`/metrics` in Prometheus text format, protected by a bearer token (METRICS_TOKEN).

The figures are read from the database at scrape time by a custom collector, not counted in
process memory: web, workers and beat are separate processes (and machines), and the database
is where every one of them writes what happened. Apps add their own families with
`register_family()` from their AppConfig.ready() (sync/metrics.py: runs, rows, requests;
payments/metrics.py: the write-back queue and webhook deliveries).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

_families: list[Callable[[], Iterable[Metric]]] = []


def register_family(fn: Callable[[], Iterable[Metric]]) -> Callable[[], Iterable[Metric]]:
    _families.append(fn)
    return fn


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
