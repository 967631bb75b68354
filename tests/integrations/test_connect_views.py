"""The dashboard side of connect: status page, edit, disconnect, roles and tenancy."""

import pytest
from django.urls import reverse

from integrations.models import AutotaskConnection, IntegrationEvent
from partners.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def connected_a(partner_a, connect):
    return connect(partner_a)


def test_integrations_page_shows_status_without_secret(client_a, connected_a, autotask_sandbox):
    html = client_a.get(reverse("dashboard:integrations")).content.decode()
    assert "Connected" in html
    assert connected_a.masked_username in html
    assert "No filters: every customer and invoice is synced, except voided invoices." in html
    assert "Voided invoices left out" not in html
    assert autotask_sandbox.db.secret not in html
    assert autotask_sandbox.db.username not in html


def test_other_partner_sees_connect_button_not_a_status(client_b, connected_a):
    html = client_b.get(reverse("dashboard:integrations")).content.decode()
    assert connected_a.masked_username not in html
    assert reverse("integrations:autotask-connect") in html


def test_edit_identifier_and_filters_from_dashboard(client_a, connected_a):
    response = client_a.post(
        reverse("integrations:autotask-edit"),
        {"account_email": "new@alpha.test", "identifier": "autotask_id", "active_only": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = AutotaskConnection.objects.get(pk=connected_a.pk)
    assert conn.identifier == "autotask_id"
    assert conn.filters == {"active_only": True}
    assert conn.account_email == "new@alpha.test"
    assert IntegrationEvent.objects.filter(kind="updated").exists()


def test_edit_rejects_bad_filter_and_changes_nothing(client_a, connected_a):
    before = list(AutotaskConnection.objects.values())
    response = client_a.post(
        reverse("integrations:autotask-edit"),
        {
            "account_email": "a@alpha.test",
            "identifier": "invoice_number",
            "invoices_from": "not-a-date",
        },
    )
    assert response.status_code == 200
    assert "Must be a date" in response.content.decode()
    assert list(AutotaskConnection.objects.values()) == before


def test_disconnect_from_dashboard(client_a, connected_a):
    response = client_a.post(reverse("integrations:autotask-disconnect"))
    assert response.status_code == 302
    conn = AutotaskConnection.objects.get(pk=connected_a.pk)
    assert conn.status == "disconnected" and conn.secret is None


def test_member_cannot_open_connect_or_disconnect(client, make_user, partner_a, connected_a):
    member = make_user(partner_a, role=User.Role.MEMBER)
    client.force_login(member)
    assert client.get(reverse("integrations:autotask-connect")).status_code == 403
    assert client.post(reverse("integrations:autotask-disconnect")).status_code == 403
    assert AutotaskConnection.objects.get(pk=connected_a.pk).status == "connected"
