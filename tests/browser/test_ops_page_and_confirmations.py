"""In Chromium (issue 17): the ops partner list at 1366 px shows Open problems on screen, the
partner page's Pause/Resume buttons work, a staff user at / lands in the admin; on the invoice
page, Delete payment asks first (data-confirm, static/js/confirm.js) and does nothing when the
question is dismissed."""

from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.models import AutotaskConnection
from partners.models import User
from payments.models import Payment
from payments.services import ledger
from tests.admin.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def connection(partner_a):
    conn = AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="a@a.test",
        username="u",
        secret="s",
        connected_at=timezone.now(),
    )
    conn.record_error("bad_secret", "Autotask refused the secret.", needs_attention=True)
    return conn


def admin_login(page, user):
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def test_ops_partner_list_and_page_buttons(page, connection, partner_a):
    ops = User.objects.create_superuser("ops-ben", "ben@paysync.test", PASSWORD)
    page.set_viewport_size({"width": 1366, "height": 900})
    admin_login(page, ops)
    page.goto("/")
    page.wait_for_url("**/admin/")  # staff at the dashboard's home go to the admin

    page.goto("/admin/partners/partner/")
    header = page.locator("#result_list thead th.column-open_problems")
    box = header.bounding_box()
    assert box and box["x"] + box["width"] <= 1366, box
    cell = page.locator("#result_list tbody td.field-open_problems").first
    assert "connection needs attention" in cell.inner_text()
    assert page.locator("select[name=action] option[value=delete_selected]").count() == 0

    page.goto(f"/admin/partners/partner/{partner_a.pk}/change/")
    page.get_by_role("button", name="Pause schedules").click()
    page.wait_for_load_state()
    assert "Schedules paused for 1 connection(s)." in page.locator(".messagelist").inner_text()
    connection.refresh_from_db()
    assert connection.schedules_paused is True
    page.get_by_role("button", name="Resume schedules").click()
    page.wait_for_load_state()
    connection.refresh_from_db()
    assert connection.schedules_paused is False


def test_delete_payment_asks_first(page, login, user_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="50.00")
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=Decimal("20.00"))
    login(user_a.username)
    page.goto(f"/invoices/{invoice.pk}/")
    asked = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator("#payments button", has_text="Delete").click()
    page.wait_for_timeout(300)
    assert asked and asked[0].startswith("Delete this payment of $20.00?")
    assert Payment.objects.get().status == "succeeded"  # dismissed: nothing sent

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#payments button", has_text="Delete").click()
    page.wait_for_load_state()
    page.wait_for_selector("#record-payment")
    assert Payment.objects.get().status == "deleted"
