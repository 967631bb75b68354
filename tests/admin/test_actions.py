"""Every ops action in the admin, run by a support user as a browser would post it: what it
does, the admin message, and the admin log entry (who, what; never a credential)."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from config.encryption import Sealed
from integrations import connect as integration_connect
from integrations import services as integration_services
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from partners.models import User
from payments.models import Payment, WebhookEvent, WritebackOutbox
from sync.models import SyncRun, SyncState
from tests.payments.helpers import writeback_drain

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def run_action(client, model, action, objects):
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    response = client.post(
        url, {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def log_messages(obj) -> list[tuple[str, str]]:
    ct = ContentType.objects.get_for_model(type(obj))
    entries = LogEntry.objects.filter(content_type=ct, object_id=str(obj.pk)).order_by("id")
    return [(e.user.username, e.get_change_message()) for e in entries]


@pytest.fixture
def ops(client, support_user):
    client.force_login(support_user)
    return client


# --- partners ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind", "title"),
    [
        ("run_fetch_new_data_now", "new_data", "Fetch New Data"),
        ("run_fetch_unpaid_invoices_now", "unpaid", "Fetch Unpaid Invoices"),
    ],
)
def test_partner_ops_sync_starts_a_run_without_touching_the_cooldown(
    ops, support_user, connected, action, kind, title
):
    partner = connected.partner
    state = SyncState.objects.get(partner=partner)
    cooldowns = (state.next_fetch_new_data_at, state.next_fetch_unpaid_at)
    shown = run_action(ops, type(partner), action, [partner])
    run = SyncRun.objects.get(partner=partner, trigger=SyncRun.Trigger.OPS)
    assert (run.kind, run.status, run.requested_by) == (kind, "queued", support_user)
    assert shown == [f"{partner}: {title} started (run #{run.pk})."]
    assert log_messages(partner) == [
        (support_user.username, f"{title}: started ops sync run #{run.pk}.")
    ]
    state.refresh_from_db()
    assert (state.next_fetch_new_data_at, state.next_fetch_unpaid_at) == cooldowns
    # Ops are not held to the cooldown: a second click starts another run at once.
    run_action(ops, type(partner), action, [partner])
    assert SyncRun.objects.filter(partner=partner, trigger=SyncRun.Trigger.OPS).count() == 2


def test_partner_ops_sync_of_an_unconnected_partner_is_refused_and_logged(
    ops, support_user, partner_c
):
    shown = run_action(ops, type(partner_c), "run_fetch_new_data_now", [partner_c])
    assert shown == [
        f"{partner_c}: Autotask is not connected. Connect it under Integrations first."
    ]
    assert not SyncRun.objects.filter(partner=partner_c).exists()
    assert log_messages(partner_c) == [
        (support_user.username, "Fetch New Data: not started (manual_sync_unavailable).")
    ]


def test_staff_with_view_permission_but_not_ops_cannot_run_actions(client, connected):
    viewer = User.objects.create_user("viewer", "v@paysync.test", PASSWORD, is_staff=True)
    group = Group.objects.create(name="viewers")
    group.permissions.add(Permission.objects.get(codename="view_partner"))
    viewer.groups.add(group)
    client.force_login(viewer)
    shown = run_action(client, type(connected.partner), "run_fetch_new_data_now", [connected])
    assert shown == []  # no action is offered to them: the post does nothing
    assert not SyncRun.objects.filter(trigger=SyncRun.Trigger.OPS).exists()
    assert LogEntry.objects.count() == 0


# --- connections ------------------------------------------------------------------------------


def test_test_connection_ok_restores_a_connection_that_needs_attention(
    ops, support_user, connected
):
    connected.record_error("auth:permission", "no permission", needs_attention=True)
    shown = run_action(ops, AutotaskConnection, "test_connection", [connected])
    assert len(shown) == 1 and shown[0].startswith(f"{connected.partner}: OK (zone ")
    assert shown[0].endswith("Status set back to connected.")
    connected.refresh_from_db()
    assert (connected.status, connected.last_error_kind) == ("connected", "")
    [(user, message)] = log_messages(connected)
    assert user == support_user.username and message.startswith("Tested connection: OK")


def test_test_connection_refused_by_autotask_marks_needs_attention(
    ops, connected, autotask_sandbox
):
    autotask_sandbox.db.secret = "rotated-in-autotask-1234"
    shown = run_action(ops, AutotaskConnection, "test_connection", [connected])
    assert shown == [
        f"{connected.partner}: failed (bad_secret): "
        f"{integration_services.MESSAGES['bad_secret']} Marked needs attention."
    ]
    connected.refresh_from_db()
    assert (connected.status, connected.last_error_kind) == ("needs_attention", "bad_secret")
    [(_, message)] = log_messages(connected)
    assert message.startswith("Tested connection: failed (bad_secret)")
    assert "rotated-in-autotask-1234" not in message


def test_test_connection_with_undecryptable_credentials_marks_needs_attention(
    ops, connected, autotask_sandbox
):
    autotask_sandbox.db.reset_log()
    AutotaskConnection.objects.filter(pk=connected.pk).update(
        secret=Sealed("v1:00000000:not-a-fernet-token")
    )
    shown = run_action(ops, AutotaskConnection, "test_connection", [connected])
    assert "cannot be decrypted" in shown[0] and "needs attention" in shown[0]
    connected.refresh_from_db()
    assert (connected.status, connected.last_error_kind) == ("needs_attention", "credentials")
    assert autotask_sandbox.db.requests() == []  # never a request with garbage credentials


def test_test_connection_of_a_disconnected_partner(ops, connected):
    integration_connect.autotask_disconnect(connection=connected, actor=None)
    shown = run_action(ops, AutotaskConnection, "test_connection", [connected])
    assert shown == [f"{connected.partner}: disconnected: no stored credentials to test."]


def test_connection_ops_sync_is_logged_on_the_connection(ops, support_user, connected):
    run_action(ops, AutotaskConnection, "run_fetch_unpaid_invoices_now", [connected])
    run = SyncRun.objects.get(trigger=SyncRun.Trigger.OPS)
    assert (run.kind, run.requested_by) == ("unpaid", support_user)
    assert log_messages(connected) == [
        (support_user.username, f"Fetch Unpaid Invoices: started ops sync run #{run.pk}.")
    ]


def test_pause_and_resume_schedules(ops, support_user, connected):
    shown = run_action(ops, AutotaskConnection, "pause_schedules", [connected])
    assert shown == ["Schedules paused for 1 connection(s)."]
    connected.refresh_from_db()
    assert connected.schedules_paused is True
    # Pausing again changes nothing and logs nothing.
    assert run_action(ops, AutotaskConnection, "pause_schedules", [connected]) == [
        "Schedules paused for 0 connection(s)."
    ]
    run_action(ops, AutotaskConnection, "resume_schedules", [connected])
    connected.refresh_from_db()
    assert connected.schedules_paused is False
    assert log_messages(connected) == [
        (support_user.username, "Schedules paused."),
        (support_user.username, "Schedules resumed."),
    ]


# --- payments ---------------------------------------------------------------------------------


def test_reprocess_applies_a_parked_event_once_its_invoice_exists(
    ops, support_user, parked_event, connected
):
    invoice = Invoice.objects.filter(partner=connected.partner, status="open").first()
    Invoice.objects.filter(pk=invoice.pk).update(number="NO-SUCH-1")
    shown = run_action(ops, WebhookEvent, "reprocess", [parked_event])
    assert shown == ["1 event(s) processed again."]
    parked_event.refresh_from_db()
    assert parked_event.status == "processed"
    assert Payment.objects.get(partner=connected.partner).invoice_id == invoice.pk
    assert log_messages(parked_event) == [
        (support_user.username, "Reprocessed: parked → processed.")
    ]
    # A processed event is left alone.
    assert run_action(ops, WebhookEvent, "reprocess", [parked_event]) == [
        "0 event(s) processed again. 1 skipped "
        "(only parked, received or failed events are processed)."
    ]
    assert Payment.objects.count() == 1


def test_reprocess_of_a_still_unknown_invoice_stays_parked(ops, parked_event):
    run_action(ops, WebhookEvent, "reprocess", [parked_event])
    parked_event.refresh_from_db()
    assert (parked_event.status, parked_event.attempts) == ("parked", 2)
    [(_, message)] = log_messages(parked_event)
    assert message == "Reprocessed: parked → parked (unknown_invoice)."


def test_retry_sends_a_parked_write_back(
    ops, support_user, parked_writeback, autotask_sandbox, django_capture_on_commit_callbacks
):
    partner = parked_writeback.partner
    with django_capture_on_commit_callbacks(execute=False) as queued:
        shown = run_action(ops, WritebackOutbox, "retry", [parked_writeback])
    assert shown == ["1 row(s) queued again."]
    assert len(queued) == 1  # the send task, after commit
    parked_writeback.refresh_from_db()
    assert (parked_writeback.state, parked_writeback.attempts) == ("pending", 0)
    assert log_messages(parked_writeback) == [
        (support_user.username, "Write-back retried (queued again).")
    ]
    assert [r.outcome for r in writeback_drain(partner=partner)] == ["sent"]
    invoice = parked_writeback.invoice
    paid = autotask_sandbox.db.get_invoice(invoice.autotask_id)["paidDate"]
    assert paid[:10] == timezone.localdate().isoformat()


def test_retry_leaves_a_done_row_alone(ops, parked_writeback):
    WritebackOutbox.objects.filter(pk=parked_writeback.pk).update(state="done")
    assert run_action(ops, WritebackOutbox, "retry", [parked_writeback]) == [
        "0 row(s) queued again."
    ]
    assert log_messages(parked_writeback) == []


def test_cancel_stops_a_parked_write_back(ops, support_user, parked_writeback):
    shown = run_action(ops, WritebackOutbox, "cancel", [parked_writeback])
    assert shown == ["1 row(s) cancelled."]
    parked_writeback.refresh_from_db()
    assert parked_writeback.state == "cancelled"
    assert writeback_drain(partner=parked_writeback.partner) == []
    assert log_messages(parked_writeback) == [(support_user.username, "Write-back cancelled.")]
