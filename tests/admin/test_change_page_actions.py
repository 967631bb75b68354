"""Ops actions as buttons on a partner's and a connection's change page (issue 17 item 10;
ops/mixins.py ObjectOpsButtonsMixin): POST with the CSRF token, the same permission as the
list actions, the same effect, message and admin log entry; plus the partner list's column
order, the staff redirect at / and the model names."""

import re

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from integrations.models import AutotaskConnection
from partners.models import User
from sync.models import SyncRun, SyncState

from .conftest import PASSWORD
from .test_actions import log_messages

pytestmark = pytest.mark.django_db

OUR_APPS = ["partners", "integrations", "customers", "invoices", "sync", "payments"]


def ops_url(obj, action):
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_ops", args=[obj.pk, action])


def change_page(client, obj):
    opts = obj._meta
    return client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))


def buttons(page) -> list[tuple[str, str]]:
    """(action url, label) of each ops button form on the page."""
    html = page.content.decode()
    return re.findall(
        r'<form method="post" action="([^"]+)" class="ops-action">'
        r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">'
        r'<button type="submit">([^<]+)</button></form>',
        html,
    )


def post_button(client, obj, action):
    response = client.post(ops_url(obj, action), follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def ops(client, support_user):
    client.force_login(support_user)
    return client


def test_partner_page_offers_the_ops_actions_as_post_buttons(ops, connected):
    partner = connected.partner
    page = change_page(ops, partner)
    assert buttons(page) == [
        (ops_url(partner, "test_connection"), "Test connection"),
        (ops_url(partner, "run_fetch_new_data_now"), "Run Fetch New Data now"),
        (ops_url(partner, "run_fetch_unpaid_invoices_now"), "Run Fetch Unpaid Invoices now"),
        (ops_url(partner, "pause_schedules"), "Pause schedules"),
    ]


def test_partner_page_test_connection_restores_and_is_logged_on_the_partner(
    ops, support_user, connected
):
    connected.record_error("auth:permission", "no permission", needs_attention=True)
    shown = post_button(ops, connected.partner, "test_connection")
    assert len(shown) == 1 and shown[0].startswith(f"{connected.partner}: OK (zone ")
    connected.refresh_from_db()
    assert connected.status == AutotaskConnection.Status.CONNECTED
    [(user, message)] = log_messages(connected.partner)
    assert user == support_user.username and message.startswith("Tested connection: OK")


def test_partner_page_pause_then_resume(ops, support_user, connected):
    partner = connected.partner
    assert post_button(ops, partner, "pause_schedules") == ["Schedules paused for 1 connection(s)."]
    connected.refresh_from_db()
    assert connected.schedules_paused is True
    labels = [label for _, label in buttons(change_page(ops, partner))]
    assert "Resume schedules" in labels and "Pause schedules" not in labels
    assert post_button(ops, partner, "resume_schedules") == [
        "Schedules resumed for 1 connection(s)."
    ]
    connected.refresh_from_db()
    assert connected.schedules_paused is False
    assert log_messages(partner) == [
        (support_user.username, "Schedules paused."),
        (support_user.username, "Schedules resumed."),
    ]


def test_partner_page_run_sync_starts_an_ops_run_without_cooldown(ops, support_user, connected):
    partner = connected.partner
    state = SyncState.objects.get(partner=partner)
    cooldown = state.next_fetch_new_data_at
    shown = post_button(ops, partner, "run_fetch_new_data_now")
    run = SyncRun.objects.get(partner=partner, trigger=SyncRun.Trigger.OPS)
    assert (run.kind, run.requested_by) == ("new_data", support_user)
    assert shown == [f"{partner}: Fetch New Data started (run #{run.pk})."]
    state.refresh_from_db()
    assert state.next_fetch_new_data_at == cooldown


def test_buttons_only_post_and_only_with_the_csrf_token(support_user, connected):
    client = Client(enforce_csrf_checks=True)
    client.force_login(support_user)
    url = ops_url(connected.partner, "pause_schedules")
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    connected.refresh_from_db()
    assert connected.schedules_paused is False
    assert LogEntry.objects.count() == 0


def test_staff_without_the_ops_permission_get_no_buttons_and_cannot_post(client, connected):
    viewer = User.objects.create_user("viewer", "v@paysync.test", PASSWORD, is_staff=True)
    group = Group.objects.create(name="viewers")
    group.permissions.add(Permission.objects.get(codename="view_partner"))
    viewer.groups.add(group)
    client.force_login(viewer)
    page = change_page(client, connected.partner)
    assert page.status_code == 200 and buttons(page) == []
    for action in ["test_connection", "pause_schedules", "run_fetch_new_data_now"]:
        assert client.post(ops_url(connected.partner, action)).status_code == 403
    connected.refresh_from_db()
    assert connected.schedules_paused is False
    assert not SyncRun.objects.filter(trigger=SyncRun.Trigger.OPS).exists()
    assert LogEntry.objects.count() == 0


def test_partner_user_cannot_post_a_button(client, user_a, connected):
    client.force_login(user_a)
    response = client.post(ops_url(connected.partner, "pause_schedules"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    connected.refresh_from_db()
    assert connected.schedules_paused is False


def test_unconnected_partner_has_no_buttons_and_unknown_actions_are_404(ops, partner_c, connected):
    assert buttons(change_page(ops, partner_c)) == []
    assert ops.post(ops_url(partner_c, "pause_schedules")).status_code == 404
    # Only the offered actions run: not any method name of the admin.
    assert ops.post(ops_url(connected.partner, "delete_queryset")).status_code == 404
    assert ops.post(ops_url(connected.partner, "resume_schedules")).status_code == 404
    assert LogEntry.objects.count() == 0


def test_connection_page_offers_the_same_buttons(ops, support_user, connected):
    page = change_page(ops, connected)
    assert [label for _, label in buttons(page)] == [
        "Test connection",
        "Run Fetch New Data now",
        "Run Fetch Unpaid Invoices now",
        "Pause schedules",
    ]
    assert post_button(ops, connected, "pause_schedules") == [
        "Schedules paused for 1 connection(s)."
    ]
    connected.refresh_from_db()
    assert connected.schedules_paused is True
    assert log_messages(connected) == [(support_user.username, "Schedules paused.")]


def test_partner_list_action_on_an_unconnected_partner_warns(ops, partner_c):
    url = reverse("admin:partners_partner_changelist")
    response = ops.post(
        url, {"action": "pause_schedules", "_selected_action": [partner_c.pk]}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [
        f"Not connected to Autotask: {partner_c}.",
        "Schedules paused for 0 connection(s).",
    ]
    assert LogEntry.objects.count() == 0


def test_open_problems_is_the_column_next_to_the_name(ops, connected):
    page = ops.get(reverse("admin:partners_partner_changelist"))
    columns = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', page.content.decode())
    # Name, then Open problems (on screen at 1366 px), then the connection.
    assert columns[:3] == ["name", "open_problems", "connection"]


def test_staff_without_partner_at_home_go_to_the_admin(client, superuser, user_a):
    client.force_login(superuser)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    client.force_login(user_a)
    assert client.get("/").status_code == 200  # partner users keep their home page


def test_model_names_are_spelled_right():
    names = {
        m._meta.label: (str(m._meta.verbose_name), str(m._meta.verbose_name_plural))
        for app in OUR_APPS
        for m in apps.get_app_config(app).get_models()
    }
    assert names["sync.ChangeLogEntry"][1] == "change log entries"
    assert names["payments.WritebackOutbox"] == (
        "write-back outbox entry",
        "write-back outbox entries",
    )
    for label, (_, plural) in names.items():
        # Django's automatic plural only appends "s": "entrys", "outboxs".
        assert not re.search(r"([^aeiou]ys|xs|ss|chs|shs)$", plural), (label, plural)
