"""Email digests to a partner's owners (issue 17 item 6; notifications/services.py): the three
triggers, owners only and never another partner's, one digest a day per kind, the per-kind
opt-out on Preferences, links and local times, and no secret in any email."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from integrations.models import AutotaskConnection
from notifications import tasks
from notifications.models import Kind, NotificationDigest, NotificationOptOut
from notifications.services import SUBJECTS, notifications_send_due
from partners.models import User
from payments.models import WritebackOutbox
from payments.services import payment_settings
from sync.models import SyncRun

pytestmark = pytest.mark.django_db

T = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)  # 11:00 in Berlin


@pytest.fixture
def secrets():
    return {"autotask": f"CANARY-AT-{uuid.uuid4()}", "user": f"canary-user-{uuid.uuid4()}"}


def connect(partner, secrets, **kw):
    fields = {
        "account_email": "psa@example.test",
        "username": secrets["user"],
        "secret": secrets["autotask"],
        "username_last4": secrets["user"][-4:],
        "connected_at": T - timedelta(days=10),
        **kw,
    }
    return AutotaskConnection.objects.create(partner=partner, **fields)


def succeeded(partner, finished_at):
    return SyncRun.objects.create(
        partner=partner,
        kind="new_data",
        trigger="schedule",
        status="succeeded",
        started_at=finished_at - timedelta(minutes=1),
        finished_at=finished_at,
    )


@pytest.fixture
def alpha(partner_a, make_user, secrets):
    """Partner A (Berlin): two owners, an admin and a member; connected, with a webhook secret,
    a healthy sync."""
    partner_a.time_zone = "Europe/Berlin"
    partner_a.save()
    owners = [make_user(partner_a), make_user(partner_a, username="alpha-owner-2")]
    make_user(partner_a, role=User.Role.ADMIN)
    make_user(partner_a, role=User.Role.MEMBER)
    conn = connect(partner_a, secrets)
    _, whsec = payment_settings.payment_settings_create(partner=partner_a)
    secrets["webhook"] = whsec
    succeeded(partner_a, T - timedelta(hours=1))
    return {"partner": partner_a, "owners": owners, "connection": conn}


@pytest.fixture
def bravo(partner_b, make_user, secrets):
    """Partner B: one owner and an admin, connected, healthy."""
    owner = make_user(partner_b)
    make_user(partner_b, role=User.Role.ADMIN)
    conn = connect(partner_b, {"autotask": f"CANARY-B-{uuid.uuid4()}", "user": "bravo-api"})
    succeeded(partner_b, T - timedelta(hours=1))
    return {"partner": partner_b, "owner": owner, "connection": conn}


def owner_emails(side):
    return sorted(u.email for u in side["owners"])


def of(kind):
    return [m for m in mail.outbox if SUBJECTS[kind] in m.subject]


def assert_no_secret(secrets):
    for message in mail.outbox:
        text = message.subject + message.body
        for value in secrets.values():
            assert value not in text
            assert value[-12:] not in text


def needs_attention(conn, at=T - timedelta(hours=2), kind="bad_secret"):
    AutotaskConnection.objects.filter(pk=conn.pk).update(
        status="needs_attention",
        last_error_kind=kind,
        last_error_message=f"Autotask said no to {conn.secret.reveal()}",
        last_error_at=at,
    )


def outbox(partner, make_invoice, state, *, at, number=None):
    row = WritebackOutbox.objects.create(
        partner=partner,
        invoice=make_invoice(partner, number=number),
        desired_paid_date=T.date(),
        state=state,
        last_error_kind="request",
        last_error=f"PATCH refused {uuid.uuid4()}",
    )
    WritebackOutbox.objects.filter(pk=row.pk).update(updated_at=at)
    return row


# --- nothing to say -----------------------------------------------------------------------


def test_nothing_is_sent_when_every_partner_is_fine(alpha, bravo, make_invoice):
    outbox(alpha["partner"], make_invoice, "done", at=T - timedelta(hours=1))
    outbox(alpha["partner"], make_invoice, "pending", at=T - timedelta(hours=1))
    assert notifications_send_due(now=T) == {k: 0 for k in Kind.values}
    assert mail.outbox == []
    assert not NotificationDigest.objects.exists()


# --- (a) the connection needs attention ---------------------------------------------------


def test_connection_needing_attention_emails_the_owners_of_that_partner_only(alpha, bravo, secrets):
    needs_attention(alpha["connection"])
    assert notifications_send_due(now=T)[Kind.CONNECTION] == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == owner_emails(alpha) and not message.cc and not message.bcc
    assert "Alpha IT" in message.subject and "needs attention" in message.subject
    # Time in the partner's zone (08:00 UTC is 09:00 in Berlin), plain words, absolute link.
    assert "since 2026-12-05 09:00 CET" in message.body
    assert "Autotask refused the API user's password" in message.body
    assert "http://127.0.0.1:8000/integrations/" in message.body
    assert "http://127.0.0.1:8000/preferences/#notifications" in message.body
    assert "Bravo" not in message.body
    assert "Autotask said no" not in message.body  # the raw error never
    assert_no_secret(secrets)
    digest = NotificationDigest.objects.get()
    assert (digest.partner, digest.kind, digest.last_recipients) == (
        alpha["partner"],
        "connection",
        2,
    )


def test_links_use_the_base_url_setting(alpha, settings):
    settings.PAYSYNC_BASE_URL = "https://paysync.example.com/"
    needs_attention(alpha["connection"])
    notifications_send_due(now=T)
    assert "https://paysync.example.com/integrations/" in mail.outbox[0].body
    assert "127.0.0.1" not in mail.outbox[0].body


def test_one_digest_a_day_while_the_connection_still_needs_attention(alpha, secrets):
    needs_attention(alpha["connection"])
    assert notifications_send_due(now=T)[Kind.CONNECTION] == 1
    # Later the same day in Berlin (22:59 local): nothing more.
    assert notifications_send_due(now=T + timedelta(minutes=15))[Kind.CONNECTION] == 0
    assert notifications_send_due(now=T + timedelta(hours=11, minutes=59))[Kind.CONNECTION] == 0
    assert len(mail.outbox) == 1
    # The next day there (00:01 local), still true: one more.
    assert notifications_send_due(now=T + timedelta(hours=13, minutes=1))[Kind.CONNECTION] == 1
    assert len(mail.outbox) == 2
    assert NotificationDigest.objects.get().last_sent_at == T + timedelta(hours=13, minutes=1)
    # Fixed: nothing the day after.
    AutotaskConnection.objects.filter(pk=alpha["connection"].pk).update(status="connected")
    assert notifications_send_due(now=T + timedelta(days=2))[Kind.CONNECTION] == 0
    assert len(of(Kind.CONNECTION)) == 2
    assert_no_secret(secrets)


# --- (b) write-backs parked or failed -----------------------------------------------------


def test_parked_and_failed_writebacks_are_listed_in_one_digest_per_partner(
    alpha, bravo, make_invoice, secrets
):
    a = alpha["partner"]
    parked = outbox(a, make_invoice, "parked", at=T - timedelta(hours=3), number="A-PARKED")
    failed = outbox(a, make_invoice, "failed", at=T - timedelta(hours=1), number="A-FAILED")
    outbox(a, make_invoice, "done", at=T - timedelta(hours=1), number="A-DONE")
    outbox(bravo["partner"], make_invoice, "parked", at=T - timedelta(hours=1), number="B-PARKED")

    assert notifications_send_due(now=T)[Kind.WRITEBACK] == 2
    by_to = {tuple(sorted(m.to)): m for m in mail.outbox}
    assert set(by_to) == {tuple(owner_emails(alpha)), (bravo["owner"].email,)}
    body = by_to[tuple(owner_emails(alpha))].body
    assert "Invoice A-PARKED: its paid date was not written" in body
    assert "waits for a person (2026-12-05 08:00 CET)" in body
    assert "Invoice A-FAILED: writing its paid date to Autotask failed" in body
    assert "repeated attempts (2026-12-05 10:00 CET)" in body
    assert f"http://127.0.0.1:8000/invoices/{parked.invoice_id}/" in body
    assert f"http://127.0.0.1:8000/invoices/{failed.invoice_id}/" in body
    assert "A-DONE" not in body and "B-PARKED" not in body
    assert "PATCH refused" not in body
    bravo_body = by_to[(bravo["owner"].email,)].body
    assert "B-PARKED" in bravo_body and "A-" not in bravo_body
    assert_no_secret(secrets)


def test_a_writeback_digest_lists_only_what_happened_since_the_last_one(
    alpha, make_invoice, secrets
):
    a = alpha["partner"]
    outbox(a, make_invoice, "parked", at=T - timedelta(hours=3), number="A-OLD")
    assert notifications_send_due(now=T)[Kind.WRITEBACK] == 1
    # Same day, a new one: waits for tomorrow.
    outbox(a, make_invoice, "failed", at=T + timedelta(hours=1), number="A-NEW")
    assert notifications_send_due(now=T + timedelta(hours=2))[Kind.WRITEBACK] == 0
    # Next day: the new one only; the old one (still parked) was told already.
    assert notifications_send_due(now=T + timedelta(days=1))[Kind.WRITEBACK] == 1
    digests = of(Kind.WRITEBACK)
    assert len(digests) == 2
    assert "A-OLD" in digests[0].body and "A-NEW" not in digests[0].body
    assert "A-NEW" in digests[1].body and "A-OLD" not in digests[1].body
    # Nothing new the day after: nothing sent.
    assert notifications_send_due(now=T + timedelta(days=2))[Kind.WRITEBACK] == 0
    assert len(of(Kind.WRITEBACK)) == 2
    assert_no_secret(secrets)


# --- (c) no successful sync for 48 hours --------------------------------------------------


def test_no_successful_sync_for_48_hours_emails_the_owners(alpha, bravo, secrets):
    a = alpha["partner"]
    SyncRun.objects.filter(partner=a).delete()
    succeeded(a, T - timedelta(hours=50))
    SyncRun.objects.create(
        partner=a, kind="new_data", trigger="schedule", status="failed", finished_at=T
    )
    assert notifications_send_due(now=T)[Kind.STALE_SYNC] == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == owner_emails(alpha)
    assert "48 hours" in message.subject
    assert "Last successful sync: 2026-12-03 09:00 CET" in message.body
    assert "http://127.0.0.1:8000/sync-history/" in message.body
    assert_no_secret(secrets)
    # Still true the next day: once more; the same day: not.
    assert notifications_send_due(now=T + timedelta(hours=1))[Kind.STALE_SYNC] == 0
    assert notifications_send_due(now=T + timedelta(days=1))[Kind.STALE_SYNC] == 1
    assert [sorted(m.to) for m in of(Kind.STALE_SYNC)] == [owner_emails(alpha)] * 2
    # A success since: nothing.
    succeeded(a, T + timedelta(days=1, hours=1))
    succeeded(bravo["partner"], T + timedelta(days=1, hours=1))
    assert notifications_send_due(now=T + timedelta(days=2))[Kind.STALE_SYNC] == 0
    assert len(mail.outbox) == 2


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"schedules_paused": True}, "paused"),
        ({"status": "disconnected"}, "disconnected"),
        ({"connected_at": T - timedelta(hours=47)}, "connected less than 48 hours ago"),
    ],
)
def test_no_stale_sync_email_when_not_expected_to_sync(alpha, change, why):
    a = alpha["partner"]
    SyncRun.objects.filter(partner=a).delete()
    AutotaskConnection.objects.filter(pk=alpha["connection"].pk).update(**change)
    assert notifications_send_due(now=T)[Kind.STALE_SYNC] == 0, why
    assert mail.outbox == []


def test_a_partial_sync_within_48_hours_counts_as_a_success(alpha):
    a = alpha["partner"]
    SyncRun.objects.filter(partner=a).delete()
    SyncRun.objects.create(
        partner=a, kind="new_data", trigger="schedule", status="partial", finished_at=T
    )
    assert notifications_send_due(now=T + timedelta(hours=47))[Kind.STALE_SYNC] == 0
    assert mail.outbox == []


# --- opt-out on Preferences ---------------------------------------------------------------


def test_preferences_show_the_owner_their_boxes(client, alpha):
    owner = alpha["owners"][0]
    NotificationOptOut.objects.create(partner=alpha["partner"], user=owner, kind="writeback")
    client.force_login(owner)
    body = client.get(reverse("dashboard:preferences")).content.decode()
    assert 'id="notifications"' in body and 'id="time-zone"' in body
    assert 'name="connection" id="id_connection" checked' in body
    assert 'name="stale_sync" id="id_stale_sync" checked' in body
    assert 'name="writeback" id="id_writeback">' in body  # not checked


def test_admins_and_members_have_no_boxes_and_cannot_post(client, alpha):
    a = alpha["partner"]
    for role in (User.Role.ADMIN, User.Role.MEMBER):
        user = User.objects.get(partner=a, role=role)
        client.force_login(user)
        body = client.get(reverse("dashboard:preferences")).content.decode()
        assert "Only owners get these emails" in body and 'name="connection"' not in body
        response = client.post(reverse("dashboard:notifications"), {})
        assert response.status_code == 403
    assert not NotificationOptOut.objects.exists()


def test_opting_out_and_back_in(client, alpha, bravo):
    first, second = alpha["owners"]
    needs_attention(alpha["connection"])
    client.force_login(first)
    # Untick "connection" (keep the others).
    response = client.post(
        reverse("dashboard:notifications"), {"writeback": "on", "stale_sync": "on"}
    )
    assert response.status_code == 302 and response.url.endswith("/preferences/#notifications")
    assert set(NotificationOptOut.objects.values_list("user__username", "kind")) == {
        (first.username, "connection")
    }
    assert notifications_send_due(now=T)[Kind.CONNECTION] == 1
    assert mail.outbox[0].to == [second.email]

    # Both owners out: nothing sent, nothing recorded (so opting in brings the next one).
    client.force_login(second)
    client.post(reverse("dashboard:notifications"), {})
    assert notifications_send_due(now=T + timedelta(days=1))[Kind.CONNECTION] == 0
    assert len(mail.outbox) == 1
    sent_at = NotificationDigest.objects.get(kind="connection").last_sent_at
    assert sent_at == T

    # The first owner ticks it again: the next check sends (the last digest was yesterday).
    client.force_login(first)
    client.post(
        reverse("dashboard:notifications"),
        {"connection": "on", "writeback": "on", "stale_sync": "on"},
    )
    assert not NotificationOptOut.objects.filter(user=first).exists()
    assert notifications_send_due(now=T + timedelta(days=1, hours=1))[Kind.CONNECTION] == 1
    assert mail.outbox[1].to == [first.email]
    # Bravo's owner opted out of nothing and Bravo is fine: never written to.
    assert all(bravo["owner"].email not in m.to for m in mail.outbox)


def test_an_owner_without_email_or_inactive_gets_nothing(alpha):
    first, second = alpha["owners"]
    User.objects.filter(pk=first.pk).update(email="")
    User.objects.filter(pk=second.pk).update(is_active=False)
    needs_attention(alpha["connection"])
    assert notifications_send_due(now=T)[Kind.CONNECTION] == 0
    assert mail.outbox == [] and not NotificationDigest.objects.exists()


# --- sending, scale, schedule -------------------------------------------------------------


def test_a_failed_send_gives_the_digest_back(alpha, settings):
    settings.EMAIL_BACKEND = "tests.notifications.failing_backend.Backend"
    needs_attention(alpha["connection"])
    assert notifications_send_due(now=T)[Kind.CONNECTION] == 0
    assert not NotificationDigest.objects.exists()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notifications_send_due(now=T + timedelta(minutes=15))[Kind.CONNECTION] == 1


def _select_count(now):
    with CaptureQueriesContext(connection) as ctx:
        notifications_send_due(now=now)
    return sum(q["sql"].lstrip().upper().startswith("SELECT") for q in ctx.captured_queries)


def test_the_check_reads_a_fixed_number_of_times_whatever_the_number_of_partners(
    make_partner, make_user, secrets, make_invoice
):
    def add(n):
        for i in range(n):
            p = make_partner(f"Fleet {uuid.uuid4().hex[:8]}")
            make_user(p)
            needs_attention(connect(p, secrets))
            outbox(p, make_invoice, "parked", at=T - timedelta(hours=1))
            if i % 2:
                p_stale = make_partner(f"Stale {uuid.uuid4().hex[:8]}")
                make_user(p_stale)
                connect(p_stale, secrets)

    add(2)
    few = _select_count(T)
    sent_few = len(mail.outbox)
    add(6)
    many = _select_count(T)  # the first ones are done for today; the new ones are sent
    assert sent_few == 5 and len(mail.outbox) == sent_few + 15
    assert many == few


def test_the_check_is_a_periodic_task_every_15_minutes(alpha):
    task = PeriodicTask.objects.get(task="notifications.check")
    assert task.enabled and task.interval.every == 900 and task.interval.period == "seconds"
    needs_attention(alpha["connection"])
    tasks.check()
    assert len(mail.outbox) == 1
