"""The API tokens page in Chromium (issue 18): create a token (shown once), revoke it through
the confirmation dialog (static/js/confirm.js), no serious axe-core violation, no console
error; and the lockout message on the sign-in page."""

import pytest
from axe_playwright_python.sync_playwright import Axe

from partners.models import ApiToken

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOCKED = "Too many failed sign-ins. Try again in 15 minutes or ask your admin to unlock."


def serious(results):
    return [
        v["id"] for v in results.response["violations"] if v["impact"] in {"critical", "serious"}
    ]


def test_create_show_once_and_revoke(page, login, user_a):
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(user_a.username)
    page.click("nav >> text=API tokens")
    assert serious(Axe().run(page)) == []
    page.fill("#id_name", "Browser token")
    page.fill("#id_expires_in_days", "7")
    page.click("#create-token button[type=submit]")
    raw = page.inner_text("#new-token-value")
    assert raw.startswith("psk_")
    assert serious(Axe().run(page)) == []
    page.goto("/preferences/api-tokens/")
    assert raw not in page.content() and "Browser token" in page.content()

    page.once("dialog", lambda dialog: dialog.dismiss())  # "Cancel" keeps the token
    page.click("#tokens button[type=submit]")
    assert ApiToken.objects.get().revoked_at is None
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#tokens button[type=submit]")
    page.wait_for_load_state()
    assert ApiToken.objects.get().revoked_at is not None
    assert "No API tokens." in page.content()
    assert errors == []


def test_lockout_message_on_the_sign_in_page(page, login, user_a):
    for n in range(20):
        login(user_a.username, f"wrong-{n}")
    assert LOCKED in page.inner_text("[role=alert]")
    login(user_a.username)  # the right password: still locked
    assert LOCKED in page.inner_text("[role=alert]")
    assert serious(Axe().run(page)) == []
