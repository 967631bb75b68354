"""Manual syncs through the API (R10, MT-5): 202 / 429 / 403, the status endpoint, tenancy,
the schema, and twenty simultaneous clicks on PostgreSQL giving exactly one run."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection as db_connection
from rest_framework.test import APIClient

from sync.models import SyncRun, SyncState
from sync.services.manual import manual_sync_start
from sync.services.runs import sync_run_create, sync_run_fail

from .manual_support import FakeRunSync, connect_directly

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NEW_URL = "/api/v1/sync/fetch-new-data/"
UNPAID_URL = "/api/v1/sync/fetch-unpaid-invoices/"
STATUS_URL = "/api/v1/sync/status/"


@pytest.fixture(autouse=True)
def enqueued(monkeypatch):
    """No broker in these tests: what would be enqueued is recorded instead."""
    fake = FakeRunSync()
    monkeypatch.setattr("sync.tasks.run_sync", fake)
    return fake


@pytest.fixture
def connected_a(partner_a):
    connect_directly(partner_a)
    return partner_a


# --- starting -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "kind"), [(NEW_URL, "new_data"), (UNPAID_URL, "unpaid")])
def test_post_starts_a_manual_run_and_answers_202_with_its_id_and_url(
    api_a, connected_a, user_a, url, kind
):
    response = api_a.post(url)
    assert response.status_code == 202, response.content
    run = SyncRun.objects.get(partner=connected_a)
    body = response.json()
    assert body["id"] == run.pk
    assert body["url"] == f"http://testserver/api/v1/sync-runs/{run.pk}/"
    assert response["Location"] == body["url"]
    assert body["page_url"] == f"/sync-history/{run.pk}/"
    assert (body["kind"], body["status"]) == (kind, "queued")
    assert (run.kind, run.trigger, run.requested_by) == (kind, "manual", user_a)
    assert api_a.get(body["url"]).json()["id"] == run.pk


@pytest.mark.django_db
def test_refused_click_gets_429_with_retry_after_and_available_time(api_a, connected_a):
    connected_a.time_zone = "Europe/Berlin"  # the instance api_a's user holds
    connected_a.save()
    with time_machine.travel(T0, tick=False) as clock:
        started = api_a.post(NEW_URL)
        assert started.json()["next_available_at"] == "2026-03-02T11:30:00+01:00"
        clock.move_to(T0 + timedelta(minutes=30))
        response = api_a.post(NEW_URL)
    assert response.status_code == 429
    assert response["Retry-After"] == "1800"
    assert response.json() == {
        "detail": (
            "Fetch New Data can run once an hour. It is available today at 11:30 CET (in 30 min)."
        ),
        "code": "cooldown",
        "kind": "new_data",
        "available_at": "2026-03-02T11:30:00+01:00",
        "retry_after": 1800,
    }
    assert SyncRun.objects.filter(partner=connected_a).count() == 1


@pytest.mark.django_db
def test_unpaid_429_at_eleven_59_59_and_202_at_twelve_hours(api_a, connected_a):
    with time_machine.travel(T0, tick=False) as clock:
        assert api_a.post(UNPAID_URL).status_code == 202
        clock.move_to(T0 + timedelta(hours=12) - timedelta(seconds=1))
        refused = api_a.post(UNPAID_URL)
        assert (refused.status_code, refused["Retry-After"]) == (429, "1")
        assert "once every 12 hours" in refused.json()["detail"]
        clock.move_to(T0 + timedelta(hours=12))
        assert api_a.post(UNPAID_URL).status_code == 202


@pytest.mark.django_db
def test_partner_whose_primary_integration_is_not_autotask_gets_403_with_reason(partner_c, user_c):
    connect_directly(partner_c)
    api = APIClient()
    api.force_authenticate(user_c)
    for url in (NEW_URL, UNPAID_URL):
        response = api.post(url)
        assert response.status_code == 403
        assert response.json()["code"] == "manual_sync_unavailable"
        assert "primary integration is Autotask" in response.json()["detail"]
    status = api.get(STATUS_URL).json()
    assert (status["enabled"], status["actions"]) == (False, None)
    assert "primary integration is Autotask" in status["reason"]
    assert SyncRun.objects.count() == 0


@pytest.mark.django_db
def test_autotask_partner_not_connected_gets_403(api_a, partner_a):
    response = api_a.post(NEW_URL)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "Autotask is not connected. Connect it under Integrations first."
    )
    assert SyncRun.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_and_staff_without_partner_are_refused(connected_a, django_user_model):
    assert APIClient().post(NEW_URL).status_code in (401, 403)
    assert APIClient().get(STATUS_URL).status_code in (401, 403)
    staff = django_user_model.objects.create_user(username="ops", password="x", is_staff=True)
    api = APIClient()
    api.force_authenticate(staff)
    assert api.post(NEW_URL).status_code == 403
    assert SyncRun.objects.count() == 0


@pytest.mark.django_db
def test_get_on_start_endpoints_is_not_allowed(api_a, connected_a):
    assert api_a.get(NEW_URL).status_code == 405
    assert SyncRun.objects.count() == 0


# --- status ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_gives_each_actions_availability_and_the_current_run(api_a, connected_a, user_a):
    with time_machine.travel(T0, tick=False) as clock:
        run = manual_sync_start(partner=connected_a, kind="new_data", user=user_a)
        clock.move_to(T0 + timedelta(minutes=20))
        body = api_a.get(STATUS_URL).json()
    assert (body["enabled"], body["reason"], body["time_zone"]) == (True, None, "UTC")
    new, unpaid = body["actions"]["fetch_new_data"], body["actions"]["fetch_unpaid_invoices"]
    assert new["available"] is False
    assert new["available_at"] == "2026-03-02T10:30:00Z"
    assert new["wait_seconds"] == 40 * 60
    assert new["available_text"] == "available today at 10:30 UTC (in 40 min)"
    assert new["start_url"] == NEW_URL
    assert new["last_run"]["id"] == run.pk
    assert new["last_run"]["status"] == "queued"
    assert new["last_run"]["page_url"] == f"/sync-history/{run.pk}/"
    assert (unpaid["available"], unpaid["available_at"], unpaid["last_run"]) == (True, None, None)
    assert unpaid["cooldown_seconds"] == 12 * 3600
    assert body["current_run"]["id"] == run.pk


@pytest.mark.django_db
def test_status_says_what_a_queued_run_waits_for_and_errors_in_plain_words(
    api_a, connected_a, user_a
):
    scheduled = sync_run_create(
        partner=connected_a, kind="unpaid", trigger="schedule", slot="d-test"
    )
    SyncRun.objects.filter(pk=scheduled.pk).update(status="running")
    SyncState.objects.filter(partner=connected_a).update(lease_run=scheduled)
    run = manual_sync_start(partner=connected_a, kind="new_data", user=user_a)
    body = api_a.get(STATUS_URL).json()
    assert body["current_run"]["id"] == scheduled.pk
    assert body["current_run"]["description"] == "scheduled unpaid invoices sync"
    assert body["actions"]["fetch_new_data"]["last_run"]["waiting_for"] == (
        "scheduled unpaid invoices sync"
    )
    sync_run_fail(run, error_kind="auth:bad_secret", message="HTTP 401 ...")
    last = api_a.get(STATUS_URL).json()["actions"]["fetch_new_data"]["last_run"]
    assert last["status"] == "failed"
    assert last["error_text"].startswith("Autotask refused the API user's password")


@pytest.mark.django_db
def test_partner_b_cannot_see_or_touch_a_status(api_a, api_b, connected_a, partner_b, user_a):
    connect_directly(partner_b)
    run = manual_sync_start(partner=connected_a, kind="new_data", user=user_a)
    state_a = SyncState.objects.filter(partner=connected_a).values().get()
    body = api_b.get(STATUS_URL).json()
    assert body["current_run"] is None
    for action in body["actions"].values():
        assert (action["available"], action["last_run"]) == (True, None)
    assert f"/sync-runs/{run.pk}/" not in str(body)
    # B's click is B's: it neither waits on A's cooldown nor changes it.
    assert api_b.post(NEW_URL).status_code == 202
    assert SyncState.objects.filter(partner=connected_a).values().get() == state_a
    assert api_a.get(STATUS_URL).json()["actions"]["fetch_new_data"]["last_run"]["id"] == run.pk
    assert api_b.get(f"/api/v1/sync-runs/{run.pk}/").status_code == 404


@pytest.mark.django_db
def test_schema_documents_the_manual_sync_endpoints(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    for path in (NEW_URL, UNPAID_URL):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"202", "403", "429"} <= set(responses)
    assert "200" in schema["paths"][STATUS_URL]["get"]["responses"]


# --- twenty simultaneous clicks (MT-5) ---------------------------------------------------------


def click_concurrently(user, url, n=20):
    barrier = threading.Barrier(n)
    statuses, errors = [], []

    def click():
        try:
            api = APIClient()
            api.force_authenticate(user)
            barrier.wait(timeout=30)
            statuses.append(api.post(url).status_code)
        except Exception as exc:  # reported by the assertion on `errors`
            errors.append(repr(exc))
        finally:
            db_connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=click) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    return sorted(statuses)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("url", "kind"), [(NEW_URL, "new_data"), (UNPAID_URL, "unpaid")])
def test_twenty_simultaneous_clicks_make_exactly_one_run(connected_a, user_a, enqueued, url, kind):
    statuses = click_concurrently(user_a, url)
    assert statuses == [202] + [429] * 19
    runs = SyncRun.objects.filter(partner=connected_a)
    assert runs.count() == 1
    assert enqueued.calls == [(connected_a.id, runs.get().id)]
    assert runs.get().kind == kind


@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_clicks_after_a_failure_on_our_side_make_exactly_one_run(
    connected_a, user_a, enqueued
):
    first = manual_sync_start(partner=connected_a, kind="new_data", user=user_a)
    sync_run_fail(first, error_kind="worker_lost", message="lost")
    statuses = click_concurrently(user_a, NEW_URL)
    assert statuses == [202] + [429] * 19
    assert SyncRun.objects.filter(partner=connected_a).exclude(pk=first.pk).count() == 1
