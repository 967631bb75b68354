"""An ops user in a real browser, from a failed write-back to a successful retry: the partner
list shows the open problem, its link opens the outbox filtered to that partner's parked and
failed rows, "Retry now" sends the PATCH (the Celery task runs eagerly in the live server,
this test only), and Autotask (the sandbox) has the paidDate."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from config.celery import app as celery_app
from invoices.models import Invoice
from partners.models import User
from payments.models import WritebackAttempt, WritebackOutbox
from payments.services import ledger
from sync.models import SyncRun
from tests.admin.conftest import PASSWORD, support_group
from tests.payments.helpers import writeback_drain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def eager_celery(settings):
    # Tasks queued with transaction.on_commit run inside the live server's request. Celery
    # read its configuration from the settings once: the app's copy is switched as well.
    # Read the app's value before touching the settings: a lazily loaded configuration would
    # otherwise pick up True here and "restore" it for every later test.
    before = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def failed_writeback(partner_a, connect, run_now, autotask_sandbox):
    conn = connect(partner_a)
    assert run_now(conn.first_run).status == SyncRun.Status.SUCCEEDED
    invoice = (
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id").first()
    )
    ledger.payment_record(partner=partner_a, invoice_id=invoice.pk, amount=invoice.outstanding)
    db = autotask_sandbox.db
    # The partner's API user loses its permissions in Autotask: the PATCH is refused.
    db.set_switches(permission_denied=True, permission_status=403)
    assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["parked"]
    db.set_switches(permission_denied=False)  # ...and the partner fixes it
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    assert outbox.state == WritebackOutbox.State.PARKED
    assert db.get_invoice(invoice.autotask_id)["paidDate"] is None
    return outbox


def test_ops_user_retries_a_failed_writeback(
    page, failed_writeback, autotask_sandbox, eager_celery, partner_b
):
    ops = User.objects.create_user("ops-anna", "anna@paysync.test", PASSWORD, is_staff=True)
    ops.groups.add(support_group())
    invoice = failed_writeback.invoice

    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", ops.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")

    # The partner list, filtered to partners with open problems.
    page.click("#content-main a[href='/admin/partners/partner/']")
    page.click("#changelist-filter >> text=Has open problems")
    page.wait_for_url("**/admin/partners/partner/?problems=any")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    assert "Alpha IT" in row.inner_text()
    assert "connection needs attention" in row.inner_text()

    # Its failed write-back, then "Retry now" on it.
    row.locator("text=1 failed write-back(s)").click()
    page.wait_for_url("**/admin/payments/writebackoutbox/?*")
    outbox_rows = page.locator("#result_list tbody tr")
    expect(outbox_rows).to_have_count(1)
    assert "Parked (needs attention)" in outbox_rows.first.inner_text()
    assert "auth:permission" in outbox_rows.first.inner_text()
    outbox_rows.first.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", "retry")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("1 row(s) queued again.")
    # Sent in the retry's request: the row no longer needs ops.
    expect(page.locator("#result_list tbody tr")).to_have_count(0)

    # The row's page shows it done, with the successful attempt after the refused one.
    page.goto(f"/admin/payments/writebackoutbox/{failed_writeback.pk}/change/")
    assert "Done" in page.inner_text(".field-state")
    attempts = page.inner_text("#attempts_log-group")
    assert "Sent" in attempts and "Parked" in attempts

    failed_writeback.refresh_from_db()
    assert failed_writeback.state == WritebackOutbox.State.DONE
    assert list(
        WritebackAttempt.objects.filter(outbox=failed_writeback)
        .order_by("id")
        .values_list("outcome", flat=True)
    ) == ["parked", "sent"]
    paid = autotask_sandbox.db.get_invoice(invoice.autotask_id)["paidDate"]
    assert paid[:10] == timezone.localdate().isoformat()
