"""Connect Autotask in a real browser against the sandbox (issue: connect, done-when)."""

import pytest
from playwright.sync_api import expect

from integrations.models import AutotaskConnection
from sync.models import SyncRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_connect(page, login, user):
    login(user.username)
    page.goto("/integrations/")
    page.click("text=Connect")
    page.wait_for_selector("#connect-form")


def fill(page, db, *, username=None, secret=None):
    page.fill("#id_account_email", "billing@alpha.test")
    page.fill("#id_username", username or db.username)
    page.fill("#id_secret", secret or db.secret)


def test_successful_connect_shows_progress(page, login, user_a, autotask_sandbox):
    db = autotask_sandbox.db
    open_connect(page, login, user_a)
    assert "API User (system)" in page.inner_text(".steps")
    assert "every customer and invoice is synced" in page.inner_text("#no-filter-note")
    fill(page, db)
    page.click("#connect-button")
    page.wait_for_selector("#run")
    assert "/sync-history/" in page.url
    assert "Autotask is connected" in page.inner_text(".messages")
    run = SyncRun.objects.get()
    assert run.trigger == "connect"
    assert AutotaskConnection.objects.get().status == "connected"
    # The secret is never sent back to the browser.
    assert db.secret not in page.content()


def test_wrong_secret_message_keeps_input(page, login, user_a, autotask_sandbox):
    db = autotask_sandbox.db
    open_connect(page, login, user_a)
    fill(page, db, secret="definitely-wrong")
    page.click("#connect-button")
    error = page.wait_for_selector("#error-secret").inner_text()  # at its field
    assert "refused the Password (Secret)" in error
    assert page.input_value("#id_username") == db.username
    assert page.input_value("#id_account_email") == "billing@alpha.test"
    assert page.input_value("#id_secret") == ""
    assert AutotaskConnection.objects.count() == 0


def test_unknown_username_message(page, login, user_a, autotask_sandbox):
    open_connect(page, login, user_a)
    fill(page, autotask_sandbox.db, username="nobody@sandbox.test")
    page.click("#connect-button")
    error = page.wait_for_selector("#error-username").inner_text()  # at its field
    assert "does not know this API username" in error
    assert AutotaskConnection.objects.count() == 0


def test_bad_filter_message(page, login, user_a, autotask_sandbox):
    open_connect(page, login, user_a)
    fill(page, autotask_sandbox.db)
    page.fill("#id_min_total", "a lot")
    page.click("#connect-button")
    error = page.wait_for_selector("#error-min_total").inner_text()
    assert "Must be an amount" in error
    assert AutotaskConnection.objects.count() == 0
    assert len(autotask_sandbox.db.requests()) == 0


def test_preview_shows_counts(page, login, user_a, autotask_sandbox):
    db = autotask_sandbox.db
    open_connect(page, login, user_a)
    fill(page, db)
    page.click("#preview-button")
    # expect(), not wait_for_function("…"): the CSP refuses string evaluation in the page.
    expect(page.locator("#preview-result")).to_contain_text("customers")
    text = page.inner_text("#preview-result")
    assert f"{len(db.companies())} customers" in text
    assert AutotaskConnection.objects.count() == 0


def test_pickers_load_from_the_tenants_autotask_and_fill_the_filters(
    page, login, user_a, autotask_sandbox
):
    db = autotask_sandbox.db
    db.set_company_types({1: "Customer", 9: "Reseller"})
    company = sorted(db.customers(), key=lambda c: c["companyName"].lower())[0]
    open_connect(page, login, user_a)
    fill(page, db)
    page.click("#load-options")
    page.wait_for_selector("#id_include_company_ids_picker")
    assert "Loaded from your Autotask" in page.inner_text("#options-status")
    assert "Reseller" in page.inner_text("#company-type-choices")
    assert page.is_hidden("#id_include_company_ids")  # the picker replaces the id box
    page.check("#company-type-choices input[value='9']")
    page.select_option("#id_include_company_ids_picker", [str(company["id"])])
    page.select_option("#id_payment_terms_picker", label="Net 30")
    page.click("#connect-button")
    page.wait_for_selector("#run")
    conn = AutotaskConnection.objects.get()
    assert conn.filters == {
        "company_types": [9],
        "include_company_ids": [company["id"]],
        "payment_terms": [1],
    }


def test_preview_errors_name_the_field_in_plain_words(page, login, user_a, autotask_sandbox):
    open_connect(page, login, user_a)
    fill(page, autotask_sandbox.db)
    page.fill("#id_min_total", "a lot")
    page.click("#preview-button")
    page.wait_for_selector(".errorlist.from-preview")
    text = page.inner_text("#preview-result")
    assert "Minimum invoice total: Must be an amount" in text
    assert "min_total" not in text
