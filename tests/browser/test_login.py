import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_shows_dashboard_with_navigation(page, login, user_a, user_b):
    login(user_a.username)
    assert page.locator("h1").inner_text() == user_a.partner.name
    nav = page.locator("nav.sidenav").inner_text()
    for entry in [
        "Invoices",
        "Customers",
        "Payments",
        "Integrations",
        "Preferences",
        "Sync history",
    ]:
        assert entry in nav
    body = page.content()
    assert user_a.username in body
    assert user_b.username not in body


def test_wrong_password_stays_on_login(page, login, user_a):
    login(user_a.username, password="wrong-password")
    assert "/accounts/login/" in page.url
    assert "didn't match" in page.locator("[role=alert]").inner_text()


def test_sign_out(page, login, user_a):
    login(user_a.username)
    page.click("text=Sign out")
    page.wait_for_load_state()
    assert "/accounts/login/" in page.url
    page.goto("/")
    assert "/accounts/login/" in page.url
