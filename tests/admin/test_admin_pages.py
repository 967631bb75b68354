"""Every admin page renders, and no page shows a stored credential (SE-5): every changelist,
every change page of every registered model (each has an object here), every history page and
the index with its recent actions, for a superuser and for a support user, after ops actions
and a form edit have written admin log entries."""

from decimal import Decimal

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, SolarSchedule

from integrations.models import AutotaskConnection
from partners.tokens import api_token_create
from payments.models import Payment, PaymentMove, ReconciliationDrift
from sync.models import ChangeLogEntry

pytestmark = pytest.mark.django_db


def admin_urls(model, obj):
    prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    yield reverse(f"{prefix}_changelist")
    yield reverse(f"{prefix}_change", args=[obj.pk])
    yield reverse(f"{prefix}_history", args=[obj.pk])


@pytest.fixture
def every_model_has_an_object(
    connected, parked_writeback, parked_event, failed_run, support_user, superuser, user_a
):
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    AccessAttempt.objects.create(
        username="someone",
        ip_address="203.0.113.9",
        user_agent="curl",
        path_info="/accounts/login/",
        failures_since_start=20,
        get_data="",
        post_data="username=someone\npassword=********************",
    )
    api_token_create(user=user_a, name="Sample token")
    CrontabSchedule.objects.get_or_create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude="48.1", longitude="11.5")
    if not ChangeLogEntry.objects.exists():
        ChangeLogEntry.objects.create(
            partner=connected.partner,
            run=failed_run,
            record_type="invoice",
            record_id=1,
            field="total",
            old_value="1.00",
            new_value="2.00",
        )
    ReconciliationDrift.objects.create(
        partner=connected.partner,
        invoice=parked_writeback.invoice,
        reason=ReconciliationDrift.Reason.PAID_DATE_CHANGED,
        last_seen_at=timezone.now(),
    )
    invoice = parked_writeback.invoice
    payment = Payment.objects.create(
        partner=connected.partner,
        invoice=invoice,
        amount=Decimal("1.00"),
        received_at=timezone.now(),
    )
    PaymentMove.objects.create(
        partner=connected.partner,
        payment=payment,
        from_invoice=invoice,
        to_invoice=invoice,
        amount=payment.amount,
        via="ops",
    )
    objects = {}
    for model in admin.site._registry:
        objects[model] = model._default_manager.order_by("pk").first()
        assert objects[model] is not None, f"no {model.__name__} to show"
    return objects


def secrets_of(conn, autotask_sandbox, endpoint, token):
    settings_obj, webhook_secret = endpoint
    settings_obj.refresh_from_db()
    db = autotask_sandbox.db
    return [
        db.secret,
        db.username,
        conn.secret.stored,  # not even the ciphertext
        conn.username.stored,
        webhook_secret,
        settings_obj.secret.stored,
        token,  # the API token's value
        *settings.FIELD_ENCRYPTION_KEYS,
    ]


def write_log_entries(client, superuser, support_user, conn):
    """A form edit of the connection by a superuser and ops actions by support."""
    client.force_login(superuser)
    url = reverse("admin:integrations_autotaskconnection_change", args=[conn.pk])
    assert client.post(url, {"schedules_paused": "on"}).status_code == 302
    client.force_login(support_user)
    changelist = reverse("admin:integrations_autotaskconnection_changelist")
    for action in ("test_connection", "resume_schedules"):
        response = client.post(changelist, {"action": action, "_selected_action": [conn.pk]})
        assert response.status_code == 302


@pytest.mark.parametrize("who", ["superuser", "support_user"])
def test_no_admin_page_shows_credentials(
    request, client, who, every_model_has_an_object, connected, autotask_sandbox, endpoint, user_a
):
    _, token = api_token_create(user=user_a, name="Leak check")
    conn = AutotaskConnection.objects.get(pk=connected.pk)
    write_log_entries(
        client, request.getfixturevalue("superuser"), request.getfixturevalue("support_user"), conn
    )
    assert LogEntry.objects.count() >= 3
    secrets = secrets_of(conn, autotask_sandbox, endpoint, token)
    for entry in LogEntry.objects.all():
        for secret in secrets:
            assert secret not in entry.change_message
            assert secret not in entry.object_repr

    user = request.getfixturevalue(who)
    client.force_login(user)
    urls = [reverse("admin:index")]
    for model, obj in every_model_has_an_object.items():
        urls.extend(admin_urls(model, obj))
    for url in urls:
        response = client.get(url)
        # Support sees every model of our apps and of django-celery-beat, not auth's groups.
        hidden = who == "support_user" and url.startswith("/admin/auth/group/")
        assert response.status_code == (403 if hidden else 200), (url, response.status_code)
        html = response.content.decode()
        for secret in secrets:
            assert secret not in html, url
    assert len(urls) == 1 + 3 * len(admin.site._registry)
    assert len(admin.site._registry) >= 19


def test_connection_form_has_no_credential_field(client, superuser, connected):
    client.force_login(superuser)
    url = reverse("admin:integrations_autotaskconnection_change", args=[connected.pk])
    form = client.get(url).context["adminform"].form
    assert "username" not in form.fields
    assert "secret" not in form.fields
    assert list(form.fields) == ["schedules_paused"]
    html = client.get(url).content.decode()
    assert "••••" + connected.username_last4 in html


def test_api_tokens_are_in_the_admin_without_their_value_or_digest(client, superuser, user_a):
    row, token = api_token_create(user=user_a, name="Nightly export")
    client.force_login(superuser)
    assert all(m._meta.app_label != "authtoken" for m in admin.site._registry)
    for url in (
        reverse("admin:index"),
        reverse("admin:partners_apitoken_changelist"),
        reverse("admin:partners_apitoken_change", args=[row.pk]),
    ):
        html = client.get(url).content.decode()
        assert token not in html and row.digest not in html, url


def test_payment_settings_admin_lists_no_secret_field(client, superuser, endpoint):
    settings_obj, _ = endpoint
    client.force_login(superuser)
    url = reverse("admin:payments_paymentsettings_change", args=[settings_obj.pk])
    fields = client.get(url).context["adminform"].form.fields
    assert "secret" not in fields and "previous_secret" not in fields


def test_partner_user_cannot_reach_admin(client, user_a):
    client.force_login(user_a)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
