import pytest
from django.urls import reverse

from partners.models import User


@pytest.mark.django_db
class TestUsersApiIsolation:
    def test_partner_lists_only_its_own_users(self, api_a, user_a, user_b, user_c):
        response = api_a.get(reverse("api:user-list"))
        assert response.status_code == 200
        assert [row["id"] for row in response.data["results"]] == [user_a.id]

    def test_other_partners_user_answers_404(self, api_b, user_a, user_c):
        before = list(User.objects.order_by("id").values())
        response = api_b.get(reverse("api:user-detail", args=[user_a.id]))
        assert response.status_code == 404
        assert list(User.objects.order_by("id").values()) == before

    def test_own_user_detail_is_visible(self, api_a, user_a):
        response = api_a.get(reverse("api:user-detail", args=[user_a.id]))
        assert response.status_code == 200
        assert response.data["username"] == user_a.username

    def test_secret_fields_are_not_serialised(self, api_a, user_a):
        response = api_a.get(reverse("api:user-detail", args=[user_a.id]))
        assert "password" not in response.data

    def test_anonymous_is_refused(self, client, user_a):
        response = client.get(reverse("api:user-list"))
        assert response.status_code in (401, 403)
        assert "results" not in response.json()

    def test_staff_without_partner_cannot_use_partner_api(self, db):
        from rest_framework.test import APIClient

        staff = User.objects.create_user(username="ops", password="x", is_staff=True)
        client = APIClient()
        client.force_authenticate(staff)
        assert client.get(reverse("api:user-list")).status_code == 403


@pytest.mark.django_db
class TestMe:
    def test_me_returns_user_and_partner(self, api_a, user_a, partner_a):
        data = api_a.get(reverse("api:me")).data
        assert data["user"]["id"] == user_a.id
        assert data["partner"]["slug"] == partner_a.slug

    def test_token_authentication(self, user_a):
        from rest_framework.test import APIClient

        from partners.tokens import api_token_create

        _, token = api_token_create(user=user_a, name="Tenancy")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        assert client.get(reverse("api:me")).data["user"]["id"] == user_a.id

    def test_obtain_token_with_password(self, client, user_a):
        response = client.post(
            reverse("api:auth-token"), {"username": user_a.username, "password": "pw-for-tests-1"}
        )
        assert response.status_code == 200
        assert response.json()["token"].startswith("psk_")


@pytest.mark.django_db
class TestDashboardScoping:
    def test_dashboard_shows_only_own_team(self, client_a, user_a, user_b):
        html = client_a.get(reverse("dashboard:home")).content.decode()
        assert user_a.username in html
        assert user_b.username not in html

    def test_staff_without_partner_go_to_the_admin_and_get_403_elsewhere(self, client, db):
        staff = User.objects.create_user(username="ops", password="x", is_staff=True)
        client.force_login(staff)
        # The home page sends ops to their console (issue 17); other pages still refuse them.
        response = client.get(reverse("dashboard:home"))
        assert response.status_code == 302 and response["Location"] == reverse("admin:index")
        assert client.get(reverse("invoices:list")).status_code == 403


@pytest.mark.django_db
def test_user_without_partner_must_be_staff(partner_a):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="orphan", password="x")


@pytest.mark.django_db
def test_partner_task_turns_id_into_partner(partner_a):
    from celery import shared_task

    from partners.tenancy import PartnerTask

    @shared_task(base=PartnerTask, name="tests.echo_partner")
    def echo_partner(partner, suffix):
        return f"{partner.slug}:{suffix}"

    assert echo_partner.apply(args=[partner_a.id, "x"]).get() == f"{partner_a.slug}:x"
    assert echo_partner.apply(args=[987654, "x"]).get() is None
