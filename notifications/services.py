"""Email digests to a partner's owners (issue 17 item 6).

Three kinds, checked by one periodic task (`notifications.check`, every 15 minutes):
- `connection`: the Autotask connection needs attention (Autotask refused the credentials or
  our integration); repeated once a day while it stays so.
- `writeback`: write-backs of paid dates that were parked or failed since the last digest of
  that kind (each problem is mailed once; one still parked is not mailed again).
- `stale_sync`: a connected partner whose schedules are not paused, connected for over 48 hours,
  has no successful (or partially successful) sync in the last 48 hours; repeated once a day.

Rules: to the partner's owners only (active, with an email, not opted out of the kind), one
message per partner per kind, at most one a day in the partner's time zone. The checks are one
query per kind across all partners, then one query each for partners, digests, owners and
opt-outs; only a partner that gets an email costs a write of its own (the digest claim).
A digest is claimed before it is sent (at most once, never twice: a send that fails is logged
and the claim given back). Bodies are plain text with absolute links (`PAYSYNC_BASE_URL`),
times in the partner's zone, and never a raw Autotask error, a credential or a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from integrations.models import AutotaskConnection
from partners.models import Partner, User
from payments.models import WritebackOutbox
from sync.models import SyncRun
from sync.wording import PLAIN_ERRORS

from .models import Kind, NotificationDigest, NotificationOptOut

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(hours=48)
ITEMS_SHOWN = 50  # per email; the rest is counted ("and 12 more")

SUBJECTS = {
    Kind.CONNECTION: "Your Autotask connection needs attention",
    Kind.WRITEBACK: "Paid dates could not be written to Autotask",
    Kind.STALE_SYNC: "No successful sync with Autotask for 48 hours",
}


@dataclass
class Item:
    text: str
    link: str = ""


@dataclass
class Digest:
    partner_id: int
    kind: str
    items: list[Item] = field(default_factory=list)
    total: int = 0


def absolute(path: str) -> str:
    base = getattr(settings, "PAYSYNC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    return f"{base}{path}"


def local(moment: datetime | None, zone) -> str:
    if moment is None:
        return "never"
    return timezone.localtime(moment, zone).strftime("%Y-%m-%d %H:%M %Z")


# --- the checks: one query per kind across every partner ----------------------------------


def _digest_sent_at(kind: str):
    return Subquery(
        NotificationDigest.objects.filter(partner=OuterRef("partner"), kind=kind).values(
            "last_sent_at"
        )[:1]
    )


def connection_rows() -> list[dict]:
    return list(
        AutotaskConnection.objects.filter(status=AutotaskConnection.Status.NEEDS_ATTENTION).values(
            "partner_id", "last_error_kind", "last_error_at", "updated_at"
        )
    )


def writeback_rows() -> list[dict]:
    """Parked or failed outbox rows that changed since their partner's last write-back digest."""
    return list(
        WritebackOutbox.objects.filter(
            state__in=[WritebackOutbox.State.PARKED, WritebackOutbox.State.FAILED]
        )
        .annotate(digest_at=_digest_sent_at(Kind.WRITEBACK))
        .filter(Q(digest_at__isnull=True) | Q(updated_at__gt=F("digest_at")))
        .order_by("partner_id", "updated_at", "id")
        .values(
            "partner_id",
            "invoice_id",
            "invoice__number",
            "state",
            "last_error_kind",
            "updated_at",
        )
    )


def stale_sync_rows(now: datetime) -> list[dict]:
    cutoff = now - STALE_AFTER
    ok = SyncRun.objects.filter(
        partner=OuterRef("partner"),
        status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL],
        finished_at__isnull=False,
    )
    # NOT EXISTS of a recent success reads the last 48 hours of runs per partner (the partner
    # index); the last success is looked up only for the few partners that pass.
    return list(
        AutotaskConnection.objects.filter(
            status=AutotaskConnection.Status.CONNECTED,
            schedules_paused=False,
            connected_at__lte=cutoff,
        )
        .filter(~Exists(ok.filter(finished_at__gte=cutoff)))
        .annotate(last_ok=Subquery(ok.order_by("-finished_at").values("finished_at")[:1]))
        .values("partner_id", "last_ok")
    )


# --- wording ----------------------------------------------------------------------------


def _connection_digests(rows, partners) -> list[Digest]:
    out = []
    for row in rows:
        zone = partners[row["partner_id"]].zone
        kind = row["last_error_kind"]
        # The connection keeps Autotask's kind ("bad_secret"); runs prefix theirs ("auth:…").
        reason = PLAIN_ERRORS.get(kind) or PLAIN_ERRORS.get(
            f"auth:{kind}",
            "Autotask refused a request of the connection. Check it under Integrations.",
        )
        since = local(row["last_error_at"] or row["updated_at"], zone)
        text = f"Needs attention since {since}. {reason}"
        link = absolute(reverse("dashboard:integrations"))
        out.append(Digest(row["partner_id"], Kind.CONNECTION, [Item(text, link)], 1))
    return out


def _writeback_digests(rows, partners) -> list[Digest]:
    by_partner: dict[int, Digest] = {}
    for row in rows:
        digest = by_partner.setdefault(row["partner_id"], Digest(row["partner_id"], Kind.WRITEBACK))
        digest.total += 1
        if len(digest.items) >= ITEMS_SHOWN:
            continue
        zone = partners[row["partner_id"]].zone
        when = local(row["updated_at"], zone)
        if row["state"] == WritebackOutbox.State.PARKED:
            what = f"its paid date was not written to Autotask and waits for a person ({when})"
        else:
            what = f"writing its paid date to Autotask failed after repeated attempts ({when})"
        text = f"Invoice {row['invoice__number']}: {what}. The invoice's page shows why."
        link = absolute(reverse("invoices:detail", args=[row["invoice_id"]]))
        digest.items.append(Item(text, link))
    return list(by_partner.values())


def _stale_digests(rows, partners) -> list[Digest]:
    out = []
    for row in rows:
        zone = partners[row["partner_id"]].zone
        text = (
            f"Last successful sync: {local(row['last_ok'], zone)}. Scheduled syncs keep "
            "failing or not running; the sync history shows why."
        )
        link = absolute(reverse("sync:history"))
        out.append(Digest(row["partner_id"], Kind.STALE_SYNC, [Item(text, link)], 1))
    return out


def render(digest: Digest, partner: Partner) -> tuple[str, str]:
    subject = f"PaySync: {SUBJECTS[digest.kind]} ({partner.name})"
    lines = [f"Hello from PaySync, about {partner.name}:", ""]
    for item in digest.items:
        lines.append(f"- {item.text}")
        if item.link:
            lines.append(f"  {item.link}")
    if digest.total > len(digest.items):
        lines.append(f"- and {digest.total - len(digest.items)} more.")
    lines += [
        "",
        f"Times are in {partner.time_zone or 'UTC'}. You get at most one email of this kind a "
        "day. To stop them, untick it under Preferences → Notifications:",
        absolute(reverse("dashboard:preferences")) + "#notifications",
    ]
    return subject, "\n".join(lines) + "\n"


# --- sending ------------------------------------------------------------------------------


def _claim(partner: Partner, kind: str, previous, now: datetime, items: int, recipients: int):
    """Take today's digest for (partner, kind): a conditional UPDATE on the row seen by the
    check, or the INSERT of the first one. False when another check took it meanwhile."""
    fields = {"last_sent_at": now, "last_items": items, "last_recipients": recipients}
    if previous is None:
        try:
            with transaction.atomic():
                NotificationDigest.objects.create(partner=partner, kind=kind, **fields)
        except IntegrityError:
            return False
        return True
    return bool(
        NotificationDigest.objects.filter(
            partner=partner, kind=kind, last_sent_at=previous.last_sent_at
        ).update(**fields)
    )


def _give_back(partner: Partner, kind: str, previous, now: datetime) -> None:
    claimed = NotificationDigest.objects.filter(partner=partner, kind=kind, last_sent_at=now)
    if previous is None:
        claimed.delete()
    else:
        claimed.update(
            last_sent_at=previous.last_sent_at,
            last_items=previous.last_items,
            last_recipients=previous.last_recipients,
        )


def notifications_send_due(now: datetime | None = None) -> dict[str, int]:
    """Run the three checks and send what is due. Returns {kind: emails sent}."""
    now = now or timezone.now()
    # Cross-partner reads on purpose: the check looks at every partner at once (set-based).
    conn_rows = connection_rows()
    wb_rows = writeback_rows()
    stale_rows = stale_sync_rows(now)
    partner_ids = {r["partner_id"] for r in (*conn_rows, *wb_rows, *stale_rows)}
    sent = {kind: 0 for kind in Kind.values}
    if not partner_ids:
        return sent

    partners = Partner.objects.in_bulk(partner_ids)
    digests = [
        *_connection_digests(conn_rows, partners),
        *_writeback_digests(wb_rows, partners),
        *_stale_digests(stale_rows, partners),
    ]
    previous = {
        (d.partner_id, d.kind): d
        for d in NotificationDigest.objects.filter(partner_id__in=partner_ids)
    }
    owners: dict[int, list[User]] = {}
    for user in User.objects.filter(
        partner_id__in=partner_ids, role=User.Role.OWNER, is_active=True
    ).exclude(email=""):
        owners.setdefault(user.partner_id, []).append(user)
    opted_out = set(
        NotificationOptOut.objects.filter(partner_id__in=partner_ids).values_list("user_id", "kind")
    )

    mailer = get_connection()  # one SMTP session for the whole check, opened on first send
    try:
        for digest in digests:
            if _send(digest, partners[digest.partner_id], previous, owners, opted_out, now, mailer):
                sent[digest.kind] += 1
    finally:
        mailer.close()
    return sent


def _send(digest, partner, previous, owners, opted_out, now, mailer) -> bool:
    last = previous.get((partner.id, digest.kind))
    today = timezone.localtime(now, partner.zone).date()
    if last is not None and timezone.localtime(last.last_sent_at, partner.zone).date() == today:
        return False  # one a day: what is new waits for tomorrow's digest
    to = sorted(u.email for u in owners.get(partner.id, []) if (u.id, digest.kind) not in opted_out)
    if not to:
        return False  # nobody to tell: nothing recorded, so an owner who opts in gets the next
    if not _claim(partner, digest.kind, last, now, digest.total, len(to)):
        return False
    subject, body = render(digest, partner)
    try:
        EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, to, connection=mailer).send()
    except Exception:
        log.exception("notifications: %s digest of partner %s not sent", digest.kind, partner.id)
        _give_back(partner, digest.kind, last, now)
        return False
    log.info(
        "notifications: %s digest sent to partner %s (%s items, %s owners)",
        digest.kind,
        partner.id,
        digest.total,
        len(to),
    )
    return True


# --- preferences --------------------------------------------------------------------------


def opted_out_kinds(*, partner: Partner, user: User) -> set[str]:
    return set(
        NotificationOptOut.objects.for_partner(partner)
        .filter(user=user)
        .values_list("kind", flat=True)
    )


def notification_preferences_set(*, partner: Partner, user: User, wanted: set[str]) -> None:
    """The user gets the kinds in `wanted` and none of the others."""
    NotificationOptOut.objects.for_partner(partner).filter(user=user, kind__in=wanted).delete()
    for kind in set(Kind.values) - set(wanted):
        NotificationOptOut.objects.get_or_create(partner=partner, user=user, kind=kind)
