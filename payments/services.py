"""Writes of the payments app: payment settings and webhook secrets, webhook receipt and
processing, payments recorded and deleted by hand, Idempotency-Key records.

Locking order, everywhere, so that nothing deadlocks: webhook event row → per-payment advisory
lock (transaction-scoped) → payment row → invoice row → outbox row. Every change to the
payments of an invoice ends in `_invoice_recompute()`, which sets `Invoice.paid_here` to the
sum of its succeeded payments under the invoice's row lock and updates the write-back outbox in
the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.api import DomainError
from config.encryption import Sealed
from invoices.models import Invoice

from . import webhooks
from .events import EventInvalid, PaymentEvent, parse_event
from .models import (
    STATUS_RANK,
    IdempotencyKey,
    Payment,
    PaymentSettings,
    PaymentStatus,
    WebhookEvent,
)

log = logging.getLogger(__name__)

ROTATION_OVERLAP = timedelta(hours=24)
IDEMPOTENCY_RETENTION = timedelta(hours=48)  # ≥ 24 h promised
IDEMPOTENCY_STALE = timedelta(minutes=10)  # an in-progress key this old was lost with a crash
Reason = WebhookEvent.Reason


# --- payment settings and webhook secrets ------------------------------------------------------


def payment_settings_get(*, partner) -> PaymentSettings | None:
    return PaymentSettings.objects.for_partner(partner).first()


def payment_settings_create(*, partner) -> tuple[PaymentSettings, str | None]:
    """The partner's settings, created with a fresh endpoint and secret when missing. Returns
    the new secret (to show once) only when it was created now."""
    existing = payment_settings_get(partner=partner)
    if existing is not None:
        return existing, None
    secret = webhooks.generate_secret()
    try:
        with transaction.atomic():
            created = PaymentSettings.objects.create(partner=partner, secret=secret)
    except IntegrityError:  # created concurrently
        return PaymentSettings.objects.for_partner(partner).get(), None
    return created, secret


def payment_settings_rotate_secret(
    *, partner, overlap: timedelta = ROTATION_OVERLAP
) -> tuple[PaymentSettings, str]:
    """A new secret; the current one keeps verifying for `overlap` (then only the new one)."""
    settings_obj, secret = payment_settings_create(partner=partner)
    if secret is not None:
        return settings_obj, secret
    new_secret = webhooks.generate_secret()
    now = timezone.now()
    with transaction.atomic():
        s = PaymentSettings.objects.for_partner(partner).select_for_update().get()
        s.previous_secret = s.secret
        s.previous_secret_expires_at = now + overlap
        s.secret = new_secret
        s.rotated_at = now
        s.save(
            update_fields=["previous_secret", "previous_secret_expires_at", "secret", "rotated_at"]
        )
    return s, new_secret


def payment_settings_update(*, partner, allow_overpayment: bool) -> PaymentSettings:
    s, _ = payment_settings_create(partner=partner)
    PaymentSettings.objects.filter(pk=s.pk).update(allow_overpayment=allow_overpayment)
    s.allow_overpayment = allow_overpayment
    return s


@lru_cache(maxsize=2048)
def _hmac_key(stored: str) -> bytes:
    # Keyed by the ciphertext: decrypting once per process keeps verification ~µs. A rotated
    # secret has another ciphertext, so stale entries are simply never asked for again.
    return webhooks.secret_key(Sealed(stored).reveal())


def verification_keys(settings_obj: PaymentSettings, *, now: datetime) -> list[bytes]:
    keys = [_hmac_key(settings_obj.secret.stored)]
    if (
        settings_obj.previous_secret is not None
        and settings_obj.previous_secret_expires_at is not None
        and now < settings_obj.previous_secret_expires_at
    ):
        keys.append(_hmac_key(settings_obj.previous_secret.stored))
    return keys


# --- webhook receipt --------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    status: int
    body: dict


def _reject(settings_obj: PaymentSettings, reason: str, status: int = 401) -> Receipt:
    # Nothing is stored for a delivery we cannot trust: only a counter moves.
    PaymentSettings.objects.filter(pk=settings_obj.pk).update(
        rejected_count=F("rejected_count") + 1,
        last_rejected_at=timezone.now(),
        last_rejected_reason=reason[:60],
    )
    log.info("webhook rejected for endpoint %s: %s", settings_obj.endpoint_id, reason)
    return Receipt(status, {"detail": "Rejected.", "code": reason})


def webhook_event_receive(*, endpoint_id: str, headers, body: bytes) -> Receipt:
    """Verify, store raw, deduplicate and enqueue one processor delivery (RELIABILITY §4).

    The answer is 202 for a new event (after commit), 200 for a duplicate, 400 for a signed but
    malformed event (kept raw for ops), 401 for anything unsigned, 404 for an unknown endpoint,
    413 for a body over 64 KiB. Never 410.
    """
    settings_obj = (
        PaymentSettings.objects.filter(endpoint_id=endpoint_id)
        .only(
            "id",
            "partner_id",
            "endpoint_id",
            "secret",
            "previous_secret",
            "previous_secret_expires_at",
        )
        .first()
    )
    if settings_obj is None:
        return Receipt(404, {"detail": "No such endpoint.", "code": "unknown_endpoint"})
    if len(body) > webhooks.MAX_BODY_BYTES:
        return _reject(settings_obj, "body_too_large", status=413)
    now = timezone.now()
    try:
        verified = webhooks.verify(
            headers=headers,
            body=body,
            keys=verification_keys(settings_obj, now=now),
            now=now.timestamp(),
        )
    except webhooks.VerificationError as exc:
        return _reject(settings_obj, exc.reason)

    try:
        event = parse_event(body)
        problem = None
    except EventInvalid as exc:
        event, problem = None, exc
    row = WebhookEvent(
        partner_id=settings_obj.partner_id,
        settings=settings_obj,
        event_id=verified.event_id,
        event_type=event.type if event else "",
        processor_payment_id=event.payment_id if event else "",
        body=body.decode("utf-8", errors="replace"),
        signed_at=datetime.fromtimestamp(verified.timestamp, tz=UTC),
        status=WebhookEvent.Status.INVALID if problem else WebhookEvent.Status.RECEIVED,
        reason=problem.reason if problem else "",
        detail=problem.detail[:500] if problem else "",
    )
    # The unique key (partner, event_id) is the dedupe: INSERT … ON CONFLICT DO NOTHING, and
    # no row back means "seen before" (never SELECT-then-INSERT, RELIABILITY §4). One statement,
    # committed on its own: no savepoint, no IntegrityError for the duplicates of a storm.
    duplicate = not _insert_event(row)
    if not duplicate and not problem:
        from .tasks import process_webhook_event

        # Robust: the event is committed, so a broker error (Redis down) must not turn the
        # answer into a 500; the row stays "received" and the stale-event sweep enqueues it
        # (CQ-7). The error is logged by Django.
        transaction.on_commit(
            lambda: process_webhook_event.delay(settings_obj.partner_id, row.pk), robust=True
        )
    if problem:
        return Receipt(400, {"detail": problem.detail, "code": problem.reason})
    if duplicate:
        return Receipt(200, {"received": True, "duplicate": True})
    return Receipt(202, {"received": True})


def _insert_event(row: WebhookEvent) -> bool:
    """INSERT the event unless (partner, event_id) exists. True (and row.pk set) when new."""
    meta = WebhookEvent._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields]
    # Table and column names come from the model's metadata; values are parameters.
    table = connection.ops.quote_name(meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "  # noqa: S608 # nosec B608
        "ON CONFLICT (partner_id, event_id) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, values)
        found = cur.fetchone()
    if found is None:
        return False
    row.pk = found[0]
    row._state.adding = False
    return True


# --- webhook processing -----------------------------------------------------------------------


def _advisory_lock(partner_id: int, payment_key: str) -> None:
    """Serialise every event of one processor payment (transaction-scoped, ends at commit)."""
    if connection.vendor != "postgresql":
        return  # the newcomer's SQLite serialises every write transaction anyway
    digest = hashlib.sha256(f"{partner_id}:{payment_key}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _resolve_invoice(partner, event: PaymentEvent) -> tuple[Invoice | None, str]:
    """The partner's invoice an event names, locked (SELECT … FOR UPDATE), or None and why not."""
    mine = Invoice.objects.for_partner(partner).select_for_update()
    if event.invoice_id is not None:
        invoice = mine.filter(pk=event.invoice_id).first()
        if invoice is not None:
            return invoice, ""
        # Allow-listed cross-partner lookup: existence only, to label the parked event for ops
        # ("foreign" vs "unknown"); nothing of the other partner is read or changed.
        if Invoice.objects.filter(pk=event.invoice_id).exists():
            return None, Reason.FOREIGN_INVOICE
        return None, Reason.UNKNOWN_INVOICE
    matches = list(mine.filter(number=event.invoice_number).order_by("id")[:2])
    if len(matches) == 1:
        return matches[0], ""
    if len(matches) > 1:
        return None, Reason.AMBIGUOUS_INVOICE
    return None, Reason.UNKNOWN_INVOICE


def _lock_invoice(invoice_id: int) -> Invoice:
    return Invoice.objects.select_for_update().get(pk=invoice_id)


def _unpayable_reason(
    invoice: Invoice, *, amount: Decimal, currency: str, allow_over: bool, already: Decimal
) -> str:
    """Why `amount` cannot be applied to the (locked) invoice, or "". `already` is the part of
    the amount already counted in paid_here (a changed amount of the same payment)."""
    if invoice.archived_at is not None:
        return Reason.ARCHIVED_INVOICE
    if invoice.voided:
        return Reason.VOID_INVOICE
    if currency and currency.upper() != invoice.currency.upper():
        return Reason.CURRENCY
    if not allow_over and amount > invoice.outstanding + already:
        return Reason.AMOUNT
    return ""


def _partner_date(partner, when: datetime):
    try:
        tz = ZoneInfo(partner.time_zone or "UTC")
    except Exception:  # an unknown zone name: fall back to UTC rather than fail a payment
        tz = ZoneInfo("UTC")
    return timezone.localtime(when, tz).date()


def _invoice_recompute(invoice_id: int, *, partner) -> Invoice:
    """paid_here = the sum of succeeded payments, under the invoice's row lock (already held
    by the caller), then the write-back outbox follows the invoice's new state."""
    from .writeback import outbox_update

    # Two statements (an UPDATE with the sum as a subquery, a SELECT with the latest payment
    # date as one): this runs for every payment, webhook or manual.
    succeeded = Payment.objects.filter(invoice_id=OuterRef("pk"), status=PaymentStatus.SUCCEEDED)
    paid_here = Invoice._meta.get_field("paid_here")
    total = succeeded.values("invoice_id").annotate(s=Sum("amount")).values("s")
    Invoice.objects.filter(pk=invoice_id).update(
        paid_here=Coalesce(Subquery(total, output_field=paid_here), Value(Decimal("0.00"))),
        updated_at=timezone.now(),
    )
    invoice = Invoice.objects.annotate(
        last_paid_at=Subquery(succeeded.order_by("-received_at").values("received_at")[:1])
    ).get(pk=invoice_id)
    last = invoice.last_paid_at
    paid_on = _partner_date(partner, last) if last else timezone.localdate()
    outbox_update(invoice=invoice, paid_on=paid_on)
    return invoice


@dataclass
class Outcome:
    status: str  # WebhookEvent.Status
    reason: str = ""
    detail: str = ""
    payment: Payment | None = None


def _apply_processor_event(partner, settings_obj, event: PaymentEvent, signed_at) -> Outcome:
    occurred = event.occurred_at or signed_at
    payment = (
        Payment.objects.for_partner(partner)
        .select_for_update()
        .filter(processor_payment_id=event.payment_id)
        .first()
    )
    if payment is None:
        invoice, reason = _resolve_invoice(partner, event)
        if event.status != PaymentStatus.SUCCEEDED:
            # A refund or deletion before its payment: a tombstone that counts nothing, so the
            # late "succeeded" finds it and changes nothing (same end state as in order).
            payment = Payment.objects.create(
                partner=partner,
                invoice=invoice,
                amount=event.amount,
                currency=event.currency or (invoice.currency if invoice else "USD"),
                method=event.method,
                source=Payment.Source.PROCESSOR,
                processor_payment_id=event.payment_id,
                processor_version=event.version,
                status=event.status,
                received_at=occurred,
                refunded_at=occurred if event.status == PaymentStatus.REFUNDED else None,
                deleted_at=occurred if event.status == PaymentStatus.DELETED else None,
            )
            return Outcome(WebhookEvent.Status.PROCESSED, detail="tombstone", payment=payment)
        if invoice is None:
            return Outcome(WebhookEvent.Status.PARKED, reason=reason)
        reason = _unpayable_reason(
            invoice,
            amount=event.amount,
            currency=event.currency,
            allow_over=settings_obj.allow_overpayment,
            already=Decimal(0),
        )
        if reason:
            return Outcome(WebhookEvent.Status.PARKED, reason=reason)
        payment = Payment.objects.create(
            partner=partner,
            invoice=invoice,
            amount=event.amount,
            currency=event.currency or invoice.currency,
            method=event.method,
            source=Payment.Source.PROCESSOR,
            processor_payment_id=event.payment_id,
            processor_version=event.version,
            status=PaymentStatus.SUCCEEDED,
            received_at=occurred,
        )
        _invoice_recompute(invoice.pk, partner=partner)
        return Outcome(WebhookEvent.Status.PROCESSED, payment=payment)

    new_key = (STATUS_RANK[event.status], event.version)
    old_key = (STATUS_RANK[payment.status], payment.processor_version)
    if new_key <= old_key:
        # A duplicate, an older version, or a "succeeded" after a refund/deletion.
        return Outcome(WebhookEvent.Status.PROCESSED, detail="no change", payment=payment)
    if payment.invoice_id is None:  # a tombstone without invoice moving to a later state
        _set_payment_state(payment, event.status, event.version, occurred)
        return Outcome(WebhookEvent.Status.PROCESSED, detail="tombstone", payment=payment)
    invoice = _lock_invoice(payment.invoice_id)
    if invoice.archived_at is not None:
        return Outcome(WebhookEvent.Status.PARKED, reason=Reason.ARCHIVED_INVOICE)
    if event.status == PaymentStatus.SUCCEEDED:  # same state, newer version: amount may change
        counted = payment.amount if payment.status == PaymentStatus.SUCCEEDED else Decimal(0)
        reason = _unpayable_reason(
            invoice,
            amount=event.amount,
            currency=event.currency,
            allow_over=settings_obj.allow_overpayment,
            already=counted,
        )
        if reason:
            return Outcome(WebhookEvent.Status.PARKED, reason=reason)
        payment.amount, payment.method = event.amount, event.method
        payment.received_at = occurred
    _set_payment_state(payment, event.status, event.version, occurred)
    _invoice_recompute(invoice.pk, partner=partner)
    return Outcome(WebhookEvent.Status.PROCESSED, payment=payment)


def _set_payment_state(payment: Payment, status: str, version: int, when) -> None:
    payment.status = status
    payment.processor_version = version
    if status == PaymentStatus.REFUNDED and payment.refunded_at is None:
        payment.refunded_at = when
    if status == PaymentStatus.DELETED and payment.deleted_at is None:
        payment.deleted_at = when
    payment.save()


def webhook_event_process(*, partner, event_id: int) -> WebhookEvent | None:
    """Apply one stored event (received, or parked and being re-matched). Safe to run twice
    and concurrently: the event row is locked, and a processed event is left alone."""
    with transaction.atomic():
        # FOR UPDATE OF the event row only: a plain FOR UPDATE also locked the joined
        # PaymentSettings row, and every webhook acknowledgement (its INSERT checks the
        # settings foreign key with FOR KEY SHARE) waited for the event being processed.
        event = (
            WebhookEvent.objects.for_partner(partner)
            .select_for_update(of=("self",))
            .select_related("settings")
            .filter(pk=event_id)
            .first()
        )
        if event is None or event.status not in (
            WebhookEvent.Status.RECEIVED,
            WebhookEvent.Status.PARKED,
        ):
            return event
        event.attempts += 1
        try:
            parsed = parse_event(event.body.encode())
        except EventInvalid as exc:  # cannot happen for stored RECEIVED rows; be safe
            event.status, event.reason, event.detail = (
                WebhookEvent.Status.INVALID,
                exc.reason,
                exc.detail[:500],
            )
            event.save(update_fields=["status", "reason", "detail", "attempts"])
            return event
        _advisory_lock(partner.id, parsed.payment_id)
        outcome = _apply_processor_event(partner, event.settings, parsed, event.signed_at)
        event.status, event.reason, event.detail = outcome.status, outcome.reason, outcome.detail
        event.payment = outcome.payment
        event.processed_at = timezone.now()
        event.save(
            update_fields=["status", "reason", "detail", "payment", "processed_at", "attempts"]
        )
    if event.status == WebhookEvent.Status.PARKED:
        log.info("webhook event %s parked: %s", event.pk, event.reason)
    return event


def webhook_events_rematch(*, partner, limit: int = 1000) -> int:
    """After a successful sync: try the partner's parked events again (an invoice may have
    arrived, a balance changed). Returns how many were enqueued."""
    from .tasks import process_webhook_event

    ids = list(
        WebhookEvent.objects.for_partner(partner)
        .filter(status=WebhookEvent.Status.PARKED)
        .order_by("received_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    for event_id in ids:
        transaction.on_commit(
            lambda e=event_id: process_webhook_event.delay(partner.id, e), robust=True
        )
    return len(ids)


def webhook_events_requeue_stale(*, older_than: timedelta = timedelta(minutes=2)) -> int:
    """Events still "received" well after arrival lost their task (broker flush, crash):
    enqueue them again. Processing is idempotent, so an extra delivery costs nothing."""
    from .tasks import process_webhook_event

    rows = list(
        WebhookEvent.objects.filter(
            status=WebhookEvent.Status.RECEIVED, received_at__lt=timezone.now() - older_than
        )
        .order_by("received_at")
        .values_list("partner_id", "id")[:1000]
    )
    for partner_id, event_id in rows:
        process_webhook_event.delay(partner_id, event_id)
    return len(rows)


# --- payments by hand -------------------------------------------------------------------------


def payment_record(
    *,
    partner,
    invoice_id: int,
    amount: Decimal,
    method: str = "other",
    received_at: datetime | None = None,
    note: str = "",
    actor=None,
) -> Payment:
    """A payment recorded by a partner user (dashboard or API)."""
    if amount is None or amount <= 0:
        raise DomainError("The amount must be positive.", code="invalid_amount")
    settings_obj = payment_settings_get(partner=partner)
    allow_over = bool(settings_obj and settings_obj.allow_overpayment)
    with transaction.atomic():
        if not Invoice.objects.for_partner(partner).filter(pk=invoice_id).exists():
            raise DomainError("No such invoice.", code="not_found", status_code=404)
        invoice = _lock_invoice(invoice_id)
        reason = _unpayable_reason(
            invoice, amount=amount, currency="", allow_over=allow_over, already=Decimal(0)
        )
        if reason == Reason.ARCHIVED_INVOICE:
            raise DomainError(
                "Archived invoices cannot be paid.", code="invoice_archived", status_code=409
            )
        if reason == Reason.VOID_INVOICE:
            raise DomainError(
                "Voided invoices cannot be paid.", code="invoice_void", status_code=409
            )
        if reason == Reason.AMOUNT:
            raise DomainError(
                f"The amount exceeds the outstanding balance ({invoice.outstanding}).",
                code="amount_exceeds_outstanding",
                extra={"outstanding": str(invoice.outstanding)},
            )
        payment = Payment.objects.create(
            partner=partner,
            invoice=invoice,
            amount=amount,
            currency=invoice.currency,
            method=method,
            source=Payment.Source.MANUAL,
            status=PaymentStatus.SUCCEEDED,
            received_at=received_at or timezone.now(),
            note=note[:255],
            created_by=actor,
        )
        _invoice_recompute(invoice.pk, partner=partner)
    return payment


def payment_delete(*, partner, payment_id: int, actor=None) -> Payment:
    """Delete a payment (kept as a row with status "deleted"): the invoice re-opens here and,
    if we had marked it paid in Autotask, the outbox clears paidDate (R9). Idempotent."""
    with transaction.atomic():
        payment = (
            Payment.objects.for_partner(partner).select_for_update().filter(pk=payment_id).first()
        )
        if payment is None:
            raise DomainError("No such payment.", code="not_found", status_code=404)
        if payment.status == PaymentStatus.DELETED:
            return payment
        if payment.invoice_id is not None:
            invoice = _lock_invoice(payment.invoice_id)
            if invoice.archived_at is not None:
                raise DomainError(
                    "The invoice is archived: unarchive it to change its payments.",
                    code="invoice_archived",
                    status_code=409,
                )
        payment.status = PaymentStatus.DELETED
        payment.deleted_at = timezone.now()
        payment.save(update_fields=["status", "deleted_at", "updated_at"])
        if payment.invoice_id is not None:
            _invoice_recompute(payment.invoice_id, partner=partner)
    log.info("payment %s deleted by user %s", payment.pk, getattr(actor, "pk", None))
    return payment


# --- Idempotency-Key --------------------------------------------------------------------------


class IdempotencyConflict(DomainError):
    pass


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def idempotency_key_begin(*, partner, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Claim `key` for this request. Returns None when claimed (go ahead), the finished record
    to replay, or raises 409 (the first is still running) / 422 (another body)."""
    if not key or len(key) > 255:
        raise DomainError(
            "Idempotency-Key must be 1 to 255 characters.", code="bad_idempotency_key"
        )
    now = timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(partner=partner, key=key, fingerprint=fingerprint)
            return None
        except IntegrityError:
            pass
        record = IdempotencyKey.objects.for_partner(partner).filter(key=key).first()
        if record is None:
            continue  # purged meanwhile: try again
        if record.fingerprint != fingerprint:
            raise DomainError(
                "This Idempotency-Key was used with another request.",
                code="idempotency_key_reused",
                status_code=422,
            )
        if not record.in_progress:
            return record
        if record.created_at < now - IDEMPOTENCY_STALE:
            # Its request died before finishing (no effect was committed with it): take over.
            IdempotencyKey.objects.filter(pk=record.pk, in_progress=True).delete()
            continue
        raise DomainError(
            "A request with this Idempotency-Key is still being processed.",
            code="idempotency_key_in_progress",
            status_code=409,
        )
    raise DomainError(
        "Idempotency-Key is busy.", code="idempotency_key_in_progress", status_code=409
    )


def idempotency_key_finish(*, partner, key: str, status: int, body) -> None:
    IdempotencyKey.objects.for_partner(partner).filter(key=key).update(
        in_progress=False, response_status=status, response_body=body
    )


def idempotency_key_release(*, partner, key: str) -> None:
    """The request failed unexpectedly (5xx): forget the key so a retry can run."""
    IdempotencyKey.objects.for_partner(partner).filter(key=key, in_progress=True).delete()


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - IDEMPOTENCY_RETENTION
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
