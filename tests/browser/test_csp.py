"""The Content-Security-Policy in a real browser (issue 18, item 8): the ops admin (list,
change page with its actions, filters) and the API docs (Swagger UI) work under the policy,
with no violation reported on the console."""

import pytest
from playwright.sync_api import expect

from partners.models import User
from tests.admin.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def console(page):
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_admin_pages_work_under_the_policy(page, console, partner_a, user_a):
    User.objects.create_superuser("csp-ops", "csp-ops@paysync.test", PASSWORD)
    page.goto("/admin/login/")
    page.fill("#id_username", "csp-ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()
    for path in [
        "/admin/",
        "/admin/partners/partner/",
        f"/admin/partners/partner/{partner_a.pk}/change/",
        "/admin/partners/user/",
        f"/admin/partners/user/{user_a.pk}/change/",
        "/admin/invoices/invoice/?status__exact=open",
    ]:
        response = page.goto(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    # The admin's own scripts run (actions bar: "select all" toggles the checkboxes).
    page.goto("/admin/partners/partner/")
    page.check("#action-toggle")
    expect(page.locator("input.action-select").first).to_be_checked()
    assert console == []


def test_api_docs_render_under_the_policy(page, console):
    page.goto("/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("PaySync API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert console == []
