"""Admin fixtures: ops users (superuser, support, staff without a group) and a partner with
open problems (connected to the sandbox, a failed run, a parked write-back, a parked event)."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group

from invoices.models import Invoice
from partners.models import User
from payments.models import WebhookEvent, WritebackOutbox
from payments.services import ledger, payment_settings, webhook_events
from sync.models import SyncRun
from tests import factories
from tests.payments.conftest import Sender, event
from tests.payments.helpers import writeback_drain

_migration = importlib.import_module("partners.migrations.0002_support_group")
PASSWORD = factories.PASSWORD


def support_group() -> Group:
    # A transactional test's flush empties auth_group; the migration's function recreates it.
    if not Group.objects.filter(name="support").exists():
        _migration.create_support_group(django_apps)
    return Group.objects.get(name="support")


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root-ops", "ops@paysync.test", PASSWORD)


@pytest.fixture
def support_user(db):
    user = User.objects.create_user("support-ops", "support@paysync.test", PASSWORD, is_staff=True)
    user.groups.add(support_group())
    return user


@pytest.fixture
def plain_staff(db):
    """Staff without the support group: reaches the admin, sees nothing, runs nothing."""
    return User.objects.create_user("staff-nogroup", "staff@paysync.test", PASSWORD, is_staff=True)


@pytest.fixture
def connected(partner_a, connect, run_now, autotask_sandbox):
    conn = connect(partner_a)
    run = run_now(conn.first_run)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error_message
    return conn


def open_invoice(partner) -> Invoice:
    return (
        Invoice.objects.filter(partner=partner, status="open", total__gt=0).order_by("id").first()
    )


def pay_in_full(partner, invoice):
    invoice.refresh_from_db()
    return ledger.payment_record(partner=partner, invoice_id=invoice.pk, amount=invoice.outstanding)


@pytest.fixture
def parked_writeback(partner_a, connected, autotask_sandbox):
    """A payment that fully pays an invoice; Autotask refuses the PATCH (the API user lost its
    permissions), so the outbox row is parked and the connection needs attention."""
    db = autotask_sandbox.db
    invoice = open_invoice(partner_a)
    pay_in_full(partner_a, invoice)
    db.set_switches(permission_denied=True, permission_status=403)
    results = writeback_drain(partner=partner_a)
    db.set_switches(permission_denied=False)
    assert [r.outcome for r in results] == ["parked"]
    return WritebackOutbox.objects.get(invoice=invoice)


@pytest.fixture
def failed_run(partner_a, connected):
    return SyncRun.objects.create(
        partner=partner_a,
        kind=SyncRun.Kind.NEW_DATA,
        trigger=SyncRun.Trigger.SCHEDULE,
        status=SyncRun.Status.FAILED,
        error_kind="request",
        error_message="Autotask answered 400.",
    )


@pytest.fixture
def endpoint(partner_a):
    settings_obj, secret = payment_settings.payment_settings_create(partner=partner_a)
    return settings_obj, secret


@pytest.fixture
def parked_event(partner_a, endpoint):
    """A signed delivery naming an invoice that does not exist: parked for ops."""
    settings_obj, secret = endpoint
    sender = Sender(settings_obj.endpoint_id, [secret])
    body = event("succeeded", "pay_parked_1", None, "10.00", invoice_number="NO-SUCH-1")
    response = sender.send(body)
    assert response.status_code == 202, response.content
    parked = WebhookEvent.objects.get(partner=partner_a)
    if parked.status == "received":
        webhook_events.webhook_event_process(partner=partner_a, event_id=parked.pk)
        parked.refresh_from_db()
    assert parked.status == "parked", (parked.status, parked.reason)
    return parked
