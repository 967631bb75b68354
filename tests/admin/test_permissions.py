"""Who may do what in the admin: partner users never get in; support views everything and runs
the ops actions but changes and deletes nothing; superusers change what is not money or a
credential, and delete."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from integrations.models import AutotaskConnection
from invoices.models import Invoice
from sync.models import SyncRun

pytestmark = pytest.mark.django_db

OUR_APPS = ["partners", "integrations", "customers", "invoices", "payments", "sync"]


def test_support_group_views_every_model_of_our_apps_and_runs_ops_actions(support_user):
    group = Group.objects.get(name="support")
    codenames = set(group.permissions.values_list("content_type__app_label", "codename"))
    for label in [*OUR_APPS, "django_celery_beat"]:
        for model in apps.get_app_config(label).get_models():
            assert (label, f"view_{model._meta.model_name}") in codenames, model
    assert ("partners", "run_ops_actions") in codenames
    assert not {c for _, c in codenames if c.split("_")[0] in ("add", "change", "delete")}
    assert support_user.has_perm("partners.run_ops_actions")
    assert not support_user.has_perm("invoices.change_invoice")


def test_run_ops_actions_is_a_partner_permission():
    perm = Permission.objects.get(codename="run_ops_actions")
    assert (perm.content_type.app_label, perm.name) == ("partners", "Can run ops actions")


@pytest.mark.parametrize("page", ["admin:index", "admin:partners_partner_changelist"])
def test_partner_user_is_sent_to_the_admin_login(client, user_a, page):
    client.force_login(user_a)
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_partner_user_cannot_run_an_ops_action(client, user_a, connected):
    client.force_login(user_a)
    response = client.post(
        reverse("admin:partners_partner_changelist"),
        {"action": "run_fetch_new_data_now", "_selected_action": [connected.partner_id]},
    )
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not SyncRun.objects.filter(trigger=SyncRun.Trigger.OPS).exists()


def test_staff_without_the_support_group_sees_no_model(client, plain_staff, connected):
    client.force_login(plain_staff)
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(reverse("admin:partners_partner_changelist")).status_code == 403


def money_post(invoice, **changes):
    """The invoice change form as posted: only `archived_at` is a form field."""
    data = {"archived_at_0": "", "archived_at_1": ""}
    data.update({"total": "1.00", "paid_here": "999.00", "credits": "5.00"})
    data.update(changes)
    return data


def test_support_cannot_change_money_fields(client, support_user, connected):
    invoice = Invoice.objects.filter(partner=connected.partner).first()
    before = (invoice.total, invoice.paid_here, invoice.credits)
    client.force_login(support_user)
    url = reverse("admin:invoices_invoice_change", args=[invoice.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.post(url, money_post(invoice)).status_code == 403
    invoice.refresh_from_db()
    assert (invoice.total, invoice.paid_here, invoice.credits) == before


def test_superuser_cannot_change_money_fields_either(client, superuser, connected):
    invoice = Invoice.objects.filter(partner=connected.partner).first()
    before = (invoice.total, invoice.paid_here, invoice.credits)
    client.force_login(superuser)
    url = reverse("admin:invoices_invoice_change", args=[invoice.pk])
    form = client.get(url).context["adminform"].form
    assert list(form.fields) == ["archived_at"]  # total, tax, credits, paid_here: read-only
    response = client.post(
        url, money_post(invoice, archived_at_0="2026-02-01", archived_at_1="12:00:00")
    )
    assert response.status_code == 302
    invoice.refresh_from_db()
    assert (invoice.total, invoice.paid_here, invoice.credits) == before
    assert invoice.archived_at is not None
    assert invoice.total != Decimal("1.00")


@pytest.mark.parametrize(
    "url_name", ["admin:payments_payment_change", "admin:payments_writebackoutbox_change"]
)
def test_payments_are_read_only_for_superusers(client, superuser, parked_writeback, url_name):
    from payments.models import Payment

    obj = Payment.objects.first() if "payment_change" in url_name else parked_writeback
    client.force_login(superuser)
    page = client.get(reverse(url_name, args=[obj.pk]))
    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert client.post(reverse(url_name, args=[obj.pk]), {"amount": "1"}).status_code == 403


def test_support_cannot_change_a_connection(client, support_user, connected):
    client.force_login(support_user)
    url = reverse("admin:integrations_autotaskconnection_change", args=[connected.pk])
    assert client.post(url, {"schedules_paused": "on"}).status_code == 403
    connected.refresh_from_db()
    assert connected.schedules_paused is False


def test_superuser_can_pause_schedules_in_the_form_but_never_set_credentials(
    client, superuser, connected, autotask_sandbox
):
    client.force_login(superuser)
    url = reverse("admin:integrations_autotaskconnection_change", args=[connected.pk])
    stored = (connected.username.stored, connected.secret.stored)
    response = client.post(
        url, {"schedules_paused": "on", "secret": "injected", "username": "someone@else"}
    )
    assert response.status_code == 302
    conn = AutotaskConnection.objects.get(pk=connected.pk)
    assert conn.schedules_paused is True
    assert (conn.username.stored, conn.secret.stored) == stored
    assert conn.secret.reveal() == autotask_sandbox.db.secret


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:sync_syncrun_delete",
        "admin:invoices_invoice_delete",
        "admin:partners_partner_delete",
        "admin:django_celery_beat_periodictask_delete",
    ],
)
def test_support_cannot_delete(client, support_user, connected, url_name):
    obj = {
        "admin:sync_syncrun_delete": SyncRun.objects.first(),
        "admin:invoices_invoice_delete": Invoice.objects.first(),
        "admin:partners_partner_delete": connected.partner,
        "admin:django_celery_beat_periodictask_delete": PeriodicTask.objects.first(),
    }[url_name]
    client.force_login(support_user)
    url = reverse(url_name, args=[obj.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_nobody_has_a_bulk_delete_of_partners(client, support_user, superuser, connected):
    client.force_login(support_user)
    page = client.get(reverse("admin:partners_partner_changelist"))
    choices = [name for name, _ in page.context["action_form"].fields["action"].choices]
    assert choices == [
        "",
        "test_connection",
        "run_fetch_new_data_now",
        "run_fetch_unpaid_invoices_now",
        "pause_schedules",
        "resume_schedules",
    ]
    # Not even superusers: one wrong tick would cascade into partners' data and payments.
    client.force_login(superuser)
    page = client.get(reverse("admin:partners_partner_changelist"))
    choices = [name for name, _ in page.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in choices
    assert b"Delete selected" not in page.content
    response = client.post(
        reverse("admin:partners_partner_changelist"),
        {"action": "delete_selected", "_selected_action": [connected.partner.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert type(connected.partner).objects.filter(pk=connected.partner.pk).exists()


@pytest.mark.parametrize(
    ("url_name", "bulk_delete"),
    [
        ("admin:customers_customer_changelist", False),
        ("admin:invoices_invoice_changelist", False),
        ("admin:sync_syncrun_changelist", False),
        ("admin:sync_syncstate_changelist", False),
        ("admin:sync_changelogentry_changelist", False),
        ("admin:integrations_integrationevent_changelist", False),
        # Harmless, kept: users (no data hangs on them) and beat's periodic tasks.
        ("admin:partners_user_changelist", True),
        ("admin:django_celery_beat_periodictask_changelist", True),
    ],
)
def test_bulk_delete_only_where_harmless(client, superuser, connected, url_name, bulk_delete):
    client.force_login(superuser)
    page = client.get(reverse(url_name))
    assert page.status_code == 200
    form = page.context["action_form"]  # None when no action is left at all
    choices = [name for name, _ in form.fields["action"].choices] if form else []
    assert ("delete_selected" in choices) is bulk_delete
    assert (b"Delete selected" in page.content) is bulk_delete


def test_superuser_can_delete_and_edit_periodic_tasks(client, superuser, connected):
    run = SyncRun.objects.filter(partner=connected.partner).first()
    client.force_login(superuser)
    url = reverse("admin:sync_syncrun_delete", args=[run.pk])
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not SyncRun.objects.filter(pk=run.pk).exists()

    task = PeriodicTask.objects.first()
    page = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]))
    assert page.status_code == 200 and page.context["has_change_permission"] is True
    assert "enabled" in page.context["adminform"].form.fields


def test_nobody_deletes_a_connection_in_the_admin(client, superuser, connected):
    client.force_login(superuser)
    url = reverse("admin:integrations_autotaskconnection_delete", args=[connected.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert AutotaskConnection.objects.filter(pk=connected.pk).exists()
