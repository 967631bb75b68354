"""Sign-in lockout on every login (issue 18): the dashboard, the admin and the API token
endpoint. 20 wrong passwords lock the account with a clear message; the right password is then
refused until the cool-off has passed; unknown usernames get exactly the same answers; ops
unlock in the admin. Real django-axes, real database; time moved with time-machine."""

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.test import RequestFactory, override_settings
from django.urls import reverse
from django.utils import timezone

from partners.login_security import client_ip
from partners.models import ApiToken, User
from tests.admin.conftest import support_group
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-ins. Try again in 15 minutes or ask your admin to unlock."
LIMIT = 20


class Login:
    """One of the three logins: `attempt()` posts credentials, `outcome()` reads the answer as
    "ok", "wrong" or "locked" (checking each answer's own shape on the way)."""

    def __init__(self, kind, client):
        self.kind = kind
        self.client = client

    def attempt(self, username, password, ip="198.51.100.7"):
        if self.kind == "api":
            return self.client.post(
                reverse("api:auth-token"),
                {"username": username, "password": password},
                content_type="application/json",
                REMOTE_ADDR=ip,
            )
        url = reverse("login") if self.kind == "dashboard" else reverse("admin:login")
        data = {"username": username, "password": password}
        if self.kind == "admin":
            data["next"] = reverse("admin:index")
        return self.client.post(url, data, REMOTE_ADDR=ip)

    def outcome(self, response):
        if self.kind == "api":
            if response.status_code == 200:
                assert response.json()["token"].startswith("psk_")
                return "ok"
            if response.status_code == 429:
                assert response.json() == {"code": "login_locked_out", "detail": LOCKED}
                assert response["Retry-After"] == "900"
                return "locked"
            assert response.status_code == 400, response.content
            assert response.json()["code"] == "invalid_credentials"
            return "wrong"
        if response.status_code == 302:
            return "ok"
        html = response.content.decode()
        if response.status_code == 429:
            assert LOCKED in html
            return "locked"
        assert response.status_code == 200
        assert LOCKED not in html
        assert "error" in html  # the form's own "didn't match" message
        return "wrong"

    def message(self, response):
        """The part of a refusal that must not depend on the username."""
        if self.kind == "api":
            return response.status_code, response.json()
        html = response.content.decode()
        return response.status_code, LOCKED in html, "didn't match" in html or "correct" in html


@pytest.fixture
def staff_user(db):
    return User.objects.create_user("ops-login", "ops@paysync.test", PASSWORD, is_staff=True)


@pytest.fixture
def support_user(db):
    user = User.objects.create_user("support-ops", "s@paysync.test", PASSWORD, is_staff=True)
    user.groups.add(support_group())
    return user


@pytest.fixture
def plain_staff(db):
    return User.objects.create_user("staff-nogroup", "n@paysync.test", PASSWORD, is_staff=True)


@pytest.fixture(params=["dashboard", "admin", "api"])
def login(request, client, user_a, staff_user):
    login = Login(request.param, client)
    login.username = staff_user.username if request.param == "admin" else user_a.username
    return login


def test_twenty_wrong_passwords_lock_until_the_cool_off(login):
    for n in range(1, LIMIT):
        assert login.outcome(login.attempt(login.username, f"wrong-{n}")) == "wrong", n
    # The 20th failure locks, and says so.
    assert login.outcome(login.attempt(login.username, "wrong-20")) == "locked"
    # The right password is now refused too, with the same message, and signs nobody in.
    assert login.outcome(login.attempt(login.username, PASSWORD)) == "locked"
    assert "_auth_user_id" not in login.client.session
    assert not ApiToken.objects.exists()
    # Still locked just before the 15 minutes are up (attempts do not extend it either).
    with time_machine.travel(timezone.now() + timedelta(minutes=14), tick=False):
        assert login.outcome(login.attempt(login.username, PASSWORD)) == "locked"
    with time_machine.travel(timezone.now() + timedelta(minutes=16), tick=False):
        assert login.outcome(login.attempt(login.username, PASSWORD)) == "ok"


def test_unknown_username_gets_the_same_answers(login):
    """Wrong password and unknown user: the same answer; both locked after 20, alike.
    (Different client addresses, so only the per-username count is at work.)"""
    known, unknown = [], []
    for n in range(LIMIT):
        known.append(login.attempt(login.username, f"wrong-{n}", ip="198.51.100.1"))
        unknown.append(login.attempt("nobody-by-this-name", f"wrong-{n}", ip="198.51.100.2"))
    assert login.message(known[0]) == login.message(unknown[0])
    assert login.outcome(unknown[0]) == "wrong"
    assert login.message(known[-1]) == login.message(unknown[-1])
    assert login.outcome(unknown[-1]) == "locked"
    # Locked either way, from a third address too: nothing tells which name exists.
    assert login.outcome(login.attempt("nobody-by-this-name", "x", ip="198.51.100.3")) == "locked"
    assert login.outcome(login.attempt(login.username, PASSWORD, ip="198.51.100.3")) == "locked"


def test_one_address_guessing_many_accounts_is_locked(client, user_a):
    login = Login("dashboard", client)
    for n in range(LIMIT):
        login.attempt(f"guess-{n}", "password1", ip="203.0.113.50")
    # From that address even the right password of a real user is refused ...
    assert login.outcome(login.attempt(user_a.username, PASSWORD, ip="203.0.113.50")) == "locked"
    # ... while the user, from their own address, is not locked.
    assert login.outcome(login.attempt(user_a.username, PASSWORD, ip="203.0.113.51")) == "ok"


def test_a_success_before_the_limit_resets_the_count(client, user_a):
    login = Login("dashboard", client)
    for n in range(LIMIT - 1):
        login.attempt(user_a.username, f"wrong-{n}")
    assert login.outcome(login.attempt(user_a.username, PASSWORD)) == "ok"
    client.logout()
    for n in range(LIMIT - 1):
        assert login.outcome(login.attempt(user_a.username, f"again-{n}")) == "wrong"


def lock_out(client, username):
    login = Login("dashboard", client)
    for n in range(LIMIT):
        login.attempt(username, f"wrong-{n}")
    assert login.outcome(login.attempt(username, PASSWORD)) == "locked"
    return login


def test_support_unlocks_in_the_admin(client, user_a, support_user):
    login = lock_out(client, user_a.username)
    client.force_login(support_user)
    changelist = reverse("admin:axes_accessattempt_changelist")
    page = client.get(changelist)
    assert page.status_code == 200 and user_a.username in page.content.decode()
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = client.post(changelist, {"action": "unlock", "_selected_action": attempts})
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    client.logout()
    assert login.outcome(login.attempt(user_a.username, PASSWORD)) == "ok"


def test_staff_without_ops_permission_cannot_unlock(client, user_a, plain_staff):
    lock_out(client, user_a.username)
    client.force_login(plain_staff)
    changelist = reverse("admin:axes_accessattempt_changelist")
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    client.post(changelist, {"action": "unlock", "_selected_action": attempts})
    assert AccessAttempt.objects.count() == len(attempts)


def test_client_address_behind_trusted_proxies():
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9"
    )
    assert client_ip(request) == "10.0.0.2"  # no proxy trusted: the header is the client's
    with override_settings(TRUSTED_PROXY_COUNT=1):
        # The entry our proxy appended, never the spoofable leftmost one.
        assert client_ip(request) == "203.0.113.9"
    with override_settings(TRUSTED_PROXY_COUNT=3):
        assert client_ip(request) == "10.0.0.2"  # fewer entries than proxies: REMOTE_ADDR
