"""The partner's time zone (issue 17, item 6): set on Preferences by owners and admins, used for
every time the dashboard shows; members cannot change it; an unknown zone is refused."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from partners.models import User
from sync.models import SyncRun

pytestmark = pytest.mark.django_db
URL = reverse("dashboard:time-zone")


@pytest.fixture
def run(partner_a):
    return SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.NEW_DATA,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.SUCCEEDED,
        started_at=datetime(2026, 7, 1, 22, 30, tzinfo=UTC),
        finished_at=datetime(2026, 7, 1, 22, 31, tzinfo=UTC),
    )


def test_an_owner_sets_the_zone_and_every_page_shows_times_in_it(client_a, partner_a, run):
    page = reverse("sync:run-detail", args=[run.pk])
    assert "2026-07-01 22:30:00 UTC" in client_a.get(page).content.decode()

    response = client_a.post(URL, {"time_zone": "Europe/Berlin"})
    assert response.status_code == 302
    partner_a.refresh_from_db()
    assert partner_a.time_zone == "Europe/Berlin"
    html = client_a.get(page).content.decode()
    assert "2026-07-02 00:30:00 CEST" in html  # the next day in Berlin
    prefs = client_a.get(reverse("dashboard:preferences")).content.decode()
    assert '<option value="Europe/Berlin" selected>' in prefs
    # Nothing leaks into the next request of another user (the zone is per request).
    assert timezone.get_current_timezone_name() == "UTC"


def test_an_unknown_zone_is_refused_and_nothing_changes(client_a, partner_a):
    for bad in ("Mars/Olympus", "", "../etc/passwd", "UTC\x00"):
        client_a.post(URL, {"time_zone": bad})
        partner_a.refresh_from_db()
        assert partner_a.time_zone == "UTC", bad


def test_a_member_cannot_change_it(client, partner_a, make_user):
    member = make_user(partner_a, role=User.Role.MEMBER)
    client.force_login(member)
    assert client.post(URL, {"time_zone": "Asia/Tokyo"}).status_code == 403
    partner_a.refresh_from_db()
    assert partner_a.time_zone == "UTC"
    prefs = client.get(reverse("dashboard:preferences")).content.decode()
    assert "owners and admins can change it" in prefs
