"""Secret-leak scan (SE-4, issue 9 #3): a full scenario — connect (after a wrong secret), syncs,
an auth failure, payments through a signed webhook, the write-back, key rotation — then every
place a secret could escape is searched for the Autotask secrets, the webhook secret and the
encryption keys, in plain, base64 and URL-encoded forms: log output at DEBUG, every page and
API response, the Celery task messages in Redis, and every text column of the database."""

import base64
import io
import json
import logging
import uuid
from urllib.parse import quote

import pytest
import redis
from cryptography.fernet import Fernet
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from config.logging import RequestIdFilter, SecretMaskingFilter
from invoices.models import Invoice
from notifications.services import notifications_send_due
from partners.models import User
from payments.services import payment_settings, webhook_events
from sync.models import SyncRun
from sync.services.runs import execute_run
from tests.payments.conftest import Sender, event
from tests.payments.helpers import writeback_drain

pytestmark = pytest.mark.django_db


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretMaskingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    quiet = {name: logging.getLogger(name).level for name in ("urllib3", "celery", "django")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def redis_texts(url) -> list[bytes]:
    r = redis.Redis.from_url(url)
    out = []
    for key in r.scan_iter(count=1000):
        dumped = r.dump(key)
        if dumped:
            out.append(dumped)
        if r.type(key) == b"list":
            for item in r.lrange(key, 0, -1):
                out.append(item)
                try:
                    message = json.loads(item)
                    out.append(base64.b64decode(message["body"]))
                except (ValueError, KeyError, TypeError):
                    pass
    return out


def database_texts() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = [row[0] for row in cursor.fetchall()]
        texts = []
        for table in tables:
            cursor.execute(f'SELECT t::text FROM "{table}" t')
            texts.extend(row[0] for row in cursor.fetchall())
    return texts


def test_no_secret_anywhere_after_a_full_scenario(
    make_sandbox,
    partner_a,
    user_a,
    settings,
    captured_logs,
    django_capture_on_commit_callbacks,
    tmp_path,
):
    settings.MEDIA_ROOT = tmp_path
    autotask_secret = f"CANARY-{uuid.uuid4()}"
    wrong_secret = f"CANARY-{uuid.uuid4()}"
    server = make_sandbox(secret=autotask_secret, companies=6, invoices=30)
    db = server.db
    responses: list[bytes] = []
    api = APIClient()
    api.force_authenticate(user_a)

    def keep(response):
        responses.append(response.content)
        responses.append(str(dict(response.items())).encode())
        return response

    with django_capture_on_commit_callbacks(execute=True):
        body = {
            "account_email": "a@alpha.test",
            "username": db.username,
            "identifier": "invoice_number",
            "filters": {},
        }
        assert (
            keep(
                api.post(
                    reverse("api:autotask-connection"),
                    {**body, "secret": wrong_secret},
                    format="json",
                )
            ).status_code
            == 400
        )
        assert (
            keep(
                api.post(
                    reverse("api:autotask-connection"),
                    {**body, "secret": autotask_secret},
                    format="json",
                )
            ).status_code
            == 201
        )
        for run in SyncRun.objects.filter(partner=partner_a, status="queued").order_by("id"):
            execute_run(partner=partner_a, run_id=run.id)
        execute_run(
            partner=partner_a,
            run_id=SyncRun.objects.create(partner=partner_a, kind="unpaid", trigger="manual").id,
        )

        # Payments: a signed webhook pays an invoice, the write-back sends paidDate.
        settings_obj, whsec = payment_settings.payment_settings_create(partner=partner_a)
        _, whsec_new = payment_settings.payment_settings_rotate_secret(partner=partner_a)
        sender = Sender(settings_obj.endpoint_id, [whsec_new])
        invoice = Invoice.objects.filter(partner=partner_a, status="open").first()
        response = sender.send(event("succeeded", "pay_1", invoice, amount=invoice.outstanding))
        keep(response)
        assert response.status_code in (200, 202)
        from payments.models import WebhookEvent

        for ev in WebhookEvent.objects.filter(partner=partner_a):
            webhook_events.webhook_event_process(partner=partner_a, event_id=ev.id)
        writeback_drain(partner=partner_a)
        assert db.get_invoice(invoice.autotask_id)["paidDate"] is not None

        # Autotask starts refusing the secret: the run fails, the connection needs attention.
        db.secret = f"CANARY-{uuid.uuid4()}"
        failed = execute_run(
            partner=partner_a,
            run_id=SyncRun.objects.create(partner=partner_a, kind="new_data", trigger="manual").id,
        )
        assert failed.status == "failed"
        # The owners are emailed about it (notifications/).
        assert notifications_send_due()["connection"] == 1

    # Key rotation.
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *old_keys]
    call_command("rotate_encryption_keys", stdout=io.StringIO())

    # Every page and API list/detail a partner and an ops superuser can open.
    client = api
    for name in (
        "api:me",
        "api:autotask-connection",
        "api:invoice-list",
        "api:customer-list",
        "api:sync-run-list",
        "api:sync-status",
        "api:payment-list",
    ):
        keep(client.get(reverse(name)))
    keep(client.get(reverse("api:invoice-detail", args=[invoice.pk])))
    from django.test import Client

    web = Client()
    web.force_login(user_a)
    for name in (
        "dashboard:home",
        "dashboard:integrations",
        "dashboard:preferences",
        "dashboard:payments",
        "dashboard:customers",
        "invoices:list",
        "sync:history",
        "integrations:autotask-edit",
    ):
        keep(web.get(reverse(name)))
    keep(web.get(reverse("invoices:detail", args=[invoice.pk])))
    keep(web.get(reverse("payments:settings")))
    # API tokens (issue 18): one created on the API, one with the password; the answer that
    # creates a token is the one place it may appear, so those two answers are not kept.
    created = api.post(reverse("api:api-token-list"), {"name": "Leak scan"}, format="json")
    assert created.status_code == 201
    api_token = created.json()["token"]
    password_token = (
        Client()
        .post(
            reverse("api:auth-token"),
            {"username": user_a.username, "password": "pw-for-tests-1"},
            content_type="application/json",
        )
        .json()["token"]
    )
    by_token = APIClient()
    by_token.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert keep(by_token.get(reverse("api:me"))).status_code == 200
    keep(by_token.get(reverse("api:api-token-list")))
    keep(web.get(reverse("dashboard:api-tokens")))
    ops = User.objects.create_superuser("ops-scan", "ops@paysync.test", "pw-ops-scan")
    web.force_login(ops)
    from django.contrib import admin

    for model in admin.site._registry:
        keep(web.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")))

    secrets = {
        "autotask secret": autotask_secret,
        "wrong autotask secret": wrong_secret,
        "webhook secret (first)": whsec,
        "webhook secret (rotated)": whsec_new,
        "webhook key material": whsec_new.removeprefix("whsec_"),
        "encryption key (new)": new_key,
        "API token": api_token,
        "API token (password login)": password_token,
        **{f"encryption key {i}": k for i, k in enumerate(old_keys)},
    }
    places = {
        "logs": [captured_logs.getvalue()],
        "responses": [b.decode(errors="replace") for b in responses],
        "redis": [b.decode("latin-1") for b in redis_texts(settings.REDIS_URL)],
        "database": database_texts(),
        "emails": [f"{m.subject}\n{m.body}" for m in mail.outbox],
    }
    assert len(places["logs"][0]) > 1000  # the scenario really logged
    assert len(places["responses"]) > 40 and places["database"] and places["emails"]
    hits = []
    for label, secret in secrets.items():
        for form in forms(secret):
            for place, texts in places.items():
                if any(form in text for text in texts):
                    hits.append((label, place))
    assert hits == []
