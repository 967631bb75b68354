import pytest
from django.urls import reverse

from sync.models import SyncRun

pytestmark = pytest.mark.django_db


def test_metrics_need_the_token(client, settings):
    settings.METRICS_TOKEN = "metrics-token-123"
    assert client.get(reverse("metrics")).status_code == 401
    wrong = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401


def test_metrics_disabled_without_a_token(client, settings):
    settings.METRICS_TOKEN = None
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_report_runs_rows_and_requests(client, settings, partner_a, partner_b):
    settings.METRICS_TOKEN = "metrics-token-123"
    SyncRun.objects.create(
        partner=partner_a,
        kind="initial",
        trigger="connect",
        status="succeeded",
        created=40,
        requests_used=7,
    )
    SyncRun.objects.create(
        partner=partner_b,
        kind="initial",
        trigger="connect",
        status="failed",
        error_kind="auth:bad_secret",
        requests_used=2,
    )
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer metrics-token-123")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'paysync_sync_runs_total{kind="initial",status="succeeded"} 1.0' in text
    assert 'paysync_sync_runs_total{kind="initial",status="failed"} 1.0' in text
    assert 'paysync_sync_rows_total{kind="initial",outcome="created"} 40.0' in text
    assert 'paysync_autotask_requests_total{kind="initial"} 9.0' in text
    assert 'paysync_sync_errors_total{error_kind="auth:bad_secret"} 1.0' in text
