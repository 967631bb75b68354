"""API tokens (issue 18): stored hashed, named, listed and revoked by their owner (API and
dashboard), expiring, revoked on password change or deactivation, last use recorded. Real
database, requests through the URL configuration; time moved with time-machine."""

import hashlib
import importlib
from datetime import timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from partners.models import ApiToken, IdempotencyKey, User
from partners.tokens import api_token_create
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

ME = reverse("api:me")
TOKENS = reverse("api:api-token-list")


def token_client(raw, scheme="Bearer"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    return client


def create_through_api(api, **data):
    response = api.post(TOKENS, {"name": "Billing export", **data}, format="json")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


def every_stored_value():
    """Every column of every row that could hold a token: tokens and saved API answers."""
    rows = list(ApiToken.objects.values()) + list(IdempotencyKey.objects.values())
    return " ".join(str(v) for row in rows for v in row.values())


def test_created_token_is_stored_hashed_and_works(api_a, user_a):
    body = create_through_api(api_a)
    raw = body["token"]
    assert raw.startswith("psk_") and len(raw) >= 40
    row = ApiToken.objects.get(pk=body["id"])
    assert row.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert (row.user, row.partner, row.name) == (user_a, user_a.partner, "Billing export")
    assert raw not in every_stored_value()
    assert raw[8:] not in every_stored_value()  # not even most of it: only the prefix
    for scheme in ("Bearer", "Token"):
        assert token_client(raw, scheme).get(ME).json()["user"]["id"] == user_a.id


def test_listed_without_the_secret(api_a, client_a):
    raw = create_through_api(api_a)["token"]
    response = api_a.get(TOKENS)
    assert response.status_code == 200
    [listed] = response.json()["results"]
    assert "token" not in listed and "digest" not in listed
    assert listed["name"] == "Billing export" and raw.startswith(listed["prefix"])
    assert raw not in response.content.decode()
    page = client_a.get(reverse("dashboard:api-tokens"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Billing export" in html and listed["prefix"] in html and raw not in html


def test_dashboard_shows_a_new_token_once_and_revokes(client_a, user_a):
    url = reverse("dashboard:api-tokens")
    response = client_a.post(url, {"name": "From the page", "expires_in_days": "30"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=user_a)
    raw = response.context["new_token_value"]
    assert raw in response.content.decode()
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert raw not in client_a.get(url).content.decode()  # never again
    assert raw not in str(dict(client_a.session))
    assert token_client(raw).get(ME).status_code == 200

    revoke = reverse("dashboard:api-token-revoke", args=[token.pk])
    assert client_a.post(revoke).status_code == 302
    token.refresh_from_db()
    assert token.revoked_reason == ApiToken.RevokedReason.OWNER
    assert token_client(raw).get(ME).status_code == 401


def test_dashboard_form_errors_create_nothing(client_a):
    url = reverse("dashboard:api-tokens")
    assert client_a.post(url, {"name": ""}).status_code == 400
    assert client_a.post(url, {"name": "x", "expires_in_days": "91"}).status_code == 400
    assert not ApiToken.objects.exists()


def test_revoked_token_gets_401_with_www_authenticate(api_a):
    body = create_through_api(api_a)
    assert api_a.delete(reverse("api:api-token-detail", args=[body["id"]])).status_code == 204
    response = token_client(body["token"]).get(ME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert api_a.get(TOKENS).json()["results"] == []


def test_unauthenticated_api_call_gets_401_with_www_authenticate():
    response = APIClient().get(ME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert token_client("psk_not-a-token").get(ME).status_code == 401


def test_expiry_default_shorter_and_capped(api_a, settings):
    default = ApiToken.objects.get(pk=create_through_api(api_a)["id"])
    assert abs(default.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    short = ApiToken.objects.get(pk=create_through_api(api_a, expires_in_days=7)["id"])
    assert abs(short.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    response = api_a.post(TOKENS, {"name": "too long", "expires_in_days": 91}, format="json")
    assert response.status_code == 400
    assert ApiToken.objects.count() == 2
    settings.API_TOKEN_TTL_DAYS = 30
    capped = ApiToken.objects.get(pk=create_through_api(api_a)["id"])
    assert abs(capped.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


def test_expired_token_gets_401(user_a):
    _, raw = api_token_create(user=user_a, name="short", expires_in_days=1)
    assert token_client(raw).get(ME).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1), tick=False):
        assert token_client(raw).get(ME).status_code == 401


def test_password_change_revokes_every_token_of_that_user_only(user_a, make_user, partner_a):
    teammate = make_user(partner_a, username="teammate")
    _, mine = api_token_create(user=user_a, name="one")
    _, mine_too = api_token_create(user=user_a, name="two")
    _, theirs = api_token_create(user=teammate, name="theirs")
    user_a.first_name = "Renamed"
    user_a.save()  # not a password change: tokens live on
    assert token_client(mine).get(ME).status_code == 200
    user_a.set_password("a-new-password-2")
    user_a.save()
    assert token_client(mine).get(ME).status_code == 401
    assert token_client(mine_too).get(ME).status_code == 401
    assert token_client(theirs).get(ME).status_code == 200
    reasons = set(ApiToken.objects.filter(user=user_a).values_list("revoked_reason", flat=True))
    assert reasons == {ApiToken.RevokedReason.PASSWORD_CHANGED}


def test_password_hash_upgrade_on_sign_in_does_not_revoke(user_a, settings):
    _, raw = api_token_create(user=user_a, name="kept")
    # A new preferred hasher: the next successful check re-hashes the same password.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    user = User.objects.get(pk=user_a.pk)
    old_hash = user.password
    assert user.check_password(PASSWORD)
    assert User.objects.get(pk=user_a.pk).password != old_hash
    assert token_client(raw).get(ME).status_code == 200


def test_deactivated_user_gets_401(user_a):
    _, raw = api_token_create(user=user_a, name="one")
    User.objects.filter(pk=user_a.pk).update(is_active=False)  # even without the signal
    assert token_client(raw).get(ME).status_code == 401
    User.objects.filter(pk=user_a.pk).update(is_active=True)
    user_a.is_active = False
    user_a.save()
    user_a.is_active = True
    user_a.save()  # reactivated: the token stays revoked
    assert token_client(raw).get(ME).status_code == 401
    assert ApiToken.objects.get().revoked_reason == ApiToken.RevokedReason.DEACTIVATED


def test_last_used_is_recorded_at_most_once_a_minute(user_a, client_a):
    token, raw = api_token_create(user=user_a, name="busy")
    assert token.last_used_at is None
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        token_client(raw).get(ME)
    token.refresh_from_db()
    assert token.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=50), tick=False):
        token_client(raw).get(ME)
    token.refresh_from_db()
    assert token.last_used_at == start  # no write within the minute
    with time_machine.travel(start + timedelta(seconds=70), tick=False):
        token_client(raw).get(ME)
    token.refresh_from_db()
    assert token.last_used_at == start + timedelta(seconds=70)
    assert "Never" not in client_a.get(reverse("dashboard:api-tokens")).content.decode()


def test_only_own_tokens_are_listed_and_revocable(user_a, make_user, partner_a, user_b):
    teammate = make_user(partner_a, username="teammate", role=User.Role.MEMBER)
    theirs, theirs_raw = api_token_create(user=teammate, name="teammate's")
    foreign, foreign_raw = api_token_create(user=user_b, name="other partner's")
    api = APIClient()
    api.force_authenticate(user_a)  # an owner of partner A
    assert api.get(TOKENS).json()["results"] == []
    for token in (theirs, foreign):
        detail = reverse("api:api-token-detail", args=[token.pk])
        assert api.get(detail).status_code == 404
        assert api.delete(detail).status_code == 404
    from django.test import Client

    page = Client()
    page.force_login(user_a)
    for token in (theirs, foreign):
        revoke = reverse("dashboard:api-token-revoke", args=[token.pk])
        assert page.post(revoke).status_code == 404
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()
    assert token_client(theirs_raw).get(ME).status_code == 200
    assert token_client(foreign_raw).get(ME).status_code == 200


def test_password_endpoint_makes_a_named_token(client, user_a):
    response = client.post(
        reverse("api:auth-token"),
        {"username": user_a.username, "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    raw = response.json()["token"]
    token = ApiToken.objects.get(user=user_a)
    assert token.name == f"API login {timezone.localdate():%Y-%m-%d}"
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert token_client(raw, "Token").get(ME).status_code == 200


def test_password_endpoint_refuses_staff_without_partner(client):
    User.objects.create_user("ops-api", password=PASSWORD, is_staff=True)
    response = client.post(
        reverse("api:auth-token"),
        {"username": "ops-api", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 403 and response.json()["code"] == "no_partner"
    assert not ApiToken.objects.exists()


def test_old_plaintext_tokens_become_hashed_and_the_table_goes(user_a):
    migration = importlib.import_module("partners.migrations.0005_hash_old_tokens_support_perms")
    old_key = "0123456789abcdef0123456789abcdef01234567"
    staff = User.objects.create_user("ops-old", password=PASSWORD, is_staff=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamptz NOT NULL, user_id bigint NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, now(), %s), (%s, now(), %s)",
            [old_key, user_a.pk, "f" * 40, staff.pk],
        )
    with connection.schema_editor() as editor:
        migration.hash_plaintext_tokens(django_apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get()  # the staff user's could never call the partner API
    assert token.user == user_a and old_key not in every_stored_value()
    assert token_client(old_key, "Token").get(ME).json()["user"]["id"] == user_a.id
