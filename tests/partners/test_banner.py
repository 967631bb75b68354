from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import AutotaskConnection
from sync.models import SyncState

pytestmark = pytest.mark.django_db


@pytest.fixture
def connection_a(partner_a):
    return AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="a@a.test",
        username="u",
        secret="s",
        connected_at=timezone.now() - timedelta(days=5),
    )


def test_no_banner_when_recent_success(client_a, connection_a, partner_a):
    SyncState.objects.create(
        partner=partner_a, last_success={"new_data": timezone.now().isoformat()}
    )
    assert 'id="sync-banner"' not in client_a.get(reverse("dashboard:home")).content.decode()


def test_banner_after_48_hours_without_success(client_a, connection_a, partner_a):
    old = (timezone.now() - timedelta(hours=49)).isoformat()
    SyncState.objects.create(partner=partner_a, last_success={"new_data": old})
    html = client_a.get(reverse("dashboard:home")).content.decode()
    assert 'id="sync-banner"' in html
    assert "No Autotask sync has succeeded since" in html


def test_banner_when_connection_needs_attention(client_a, connection_a):
    raw = "Autotask GET /zones/x returned HTTP 401: {'errors': ['refused']}"
    connection_a.record_error("bad_secret", raw, needs_attention=True)
    html = client_a.get(reverse("dashboard:home")).content.decode()
    # Plain words and the one thing to do; never the raw HTTP text (that is for ops).
    assert "needs attention: Autotask refused the API user&#x27;s password (Secret)." in html
    assert "Generate a new secret" in html
    assert "HTTP 401" not in html and "/zones/x" not in html


def test_other_partner_sees_no_banner_of_a(connection_a, user_b, client):
    connection_a.record_error("bad_secret", "Autotask refused the secret.", needs_attention=True)
    client.force_login(user_b)
    assert 'id="sync-banner"' not in client.get(reverse("dashboard:home")).content.decode()
