"""Processor webhooks: receipt (verify, store raw, deduplicate, enqueue) and processing (apply
one stored event to its payment and invoice), the re-match of parked events after a sync and the
requeue of events whose task was lost. Processing locks in the order given in
payments/services/ledger.py and ends, like every payment change, in `_invoice_recompute()`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from invoices.models import Invoice

from .. import webhooks
from ..events import EventInvalid, PaymentEvent, event_type_of, parse_event
from ..models import STATUS_RANK, Payment, PaymentSettings, PaymentStatus, WebhookEvent
from .ledger import _invoice_recompute, _lock_invoice, _unpayable_reason
from .payment_settings import verification_keys

log = logging.getLogger(__name__)

Reason = WebhookEvent.Reason

# Processing errors (a bug, a database error) before an event is failed: parked for ops with
# its error, never re-queued by the stale-event pass, retried only by an admin action.
MAX_PROCESSING_FAILURES = 5
# Events one task drains after its own (payments/tasks.py): bounded, so a task stays well under
# the time limit and a partner's storm does not hold a worker from the other partners.
BATCH_SIZE = 100


# --- webhook receipt --------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    status: int
    body: dict


def _reject(settings_obj: PaymentSettings, reason: str, status: int = 401) -> Receipt:
    # Nothing is stored for a delivery we cannot trust: only a counter moves.
    PaymentSettings.objects.for_partner(settings_obj.partner_id).filter(pk=settings_obj.pk).update(
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
    # A type we do not handle is acknowledged (2xx) and kept as "ignored": Standard Webhooks
    # senders retry non-2xx for days and may disable the endpoint when a type is added.
    ignored = problem is not None and problem.reason == Reason.UNKNOWN_TYPE
    if problem is None:
        status = WebhookEvent.Status.RECEIVED
    else:
        status = WebhookEvent.Status.IGNORED if ignored else WebhookEvent.Status.INVALID
    row = WebhookEvent(
        partner_id=settings_obj.partner_id,
        settings=settings_obj,
        event_id=verified.event_id,
        event_type=event.type if event else event_type_of(body),
        processor_payment_id=event.payment_id if event else "",
        # Kept for ops as text: PostgreSQL text cannot hold NUL, so a raw NUL byte (only in a
        # malformed body: valid JSON has none) is stored as U+FFFD like any invalid UTF-8.
        body=body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        signed_at=datetime.fromtimestamp(verified.timestamp, tz=UTC),
        status=status,
        reason=problem.reason if problem else "",
        detail=problem.detail[:500] if problem else "",
    )
    # The unique key (partner, event_id) is the dedupe: INSERT … ON CONFLICT DO NOTHING, and
    # no row back means "seen before" (never SELECT-then-INSERT, RELIABILITY §4). One statement,
    # committed on its own: no savepoint, no IntegrityError for the duplicates of a storm.
    duplicate = not _insert_event(row)
    if not duplicate and not problem:
        from ..tasks import process_webhook_event  # here: payments.tasks imports this module

        # Robust: the event is committed, so a broker error (Redis down) must not turn the
        # answer into a 500; the row stays "received" and the stale-event sweep enqueues it
        # (CQ-7). The error is logged by Django.
        transaction.on_commit(
            lambda: process_webhook_event.delay(settings_obj.partner_id, row.pk), robust=True
        )
    if ignored:
        return Receipt(200, {"received": True, "ignored": True, "duplicate": duplicate})
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
                # Not sent and no invoice to take it from: unknown (""), never assumed USD.
                currency=event.currency or (invoice.currency if invoice else ""),
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
        _invoice_recompute(invoice.pk, partner=partner, invoice=invoice)
        return Outcome(WebhookEvent.Status.PROCESSED, payment=payment)

    new_key = (STATUS_RANK[event.status], event.version)
    old_key = (STATUS_RANK[payment.status], payment.processor_version)
    if new_key <= old_key:
        # A duplicate, an older version, or a "succeeded" after a refund/deletion.
        return Outcome(WebhookEvent.Status.PROCESSED, detail="no change", payment=payment)
    if payment.invoice_id is None:  # a tombstone without invoice moving to a later state
        _set_payment_state(payment, event.status, event.version, occurred)
        return Outcome(WebhookEvent.Status.PROCESSED, detail="tombstone", payment=payment)
    invoice = _lock_invoice(payment.invoice_id, partner=partner)
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
    _invoice_recompute(invoice.pk, partner=partner, invoice=invoice)
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
    and concurrently: the event row is locked, and a processed event is left alone.

    An exception is counted on the event (in its own transaction, the failed one rolled back)
    and raised again; the MAX_PROCESSING_FAILURES-th fails the event for ops (status "failed",
    reason "processing_error", the error kept), so no event is processed more than that."""
    try:
        return _process(partner=partner, event_id=event_id)
    except Exception as exc:
        _record_failure(partner=partner, event_id=event_id, exc=exc)
        raise


def _record_failure(*, partner, event_id: int, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}".replace("\x00", "\ufffd")[:1000]
    with transaction.atomic():
        event = (
            WebhookEvent.objects.for_partner(partner)
            .select_for_update(of=("self",))
            .filter(pk=event_id)
            .first()
        )
        if event is None or event.status not in (
            WebhookEvent.Status.RECEIVED,
            WebhookEvent.Status.PARKED,
        ):
            return
        event.failures += 1
        event.attempts += 1
        event.last_error = error
        if event.failures >= MAX_PROCESSING_FAILURES:
            event.status = WebhookEvent.Status.FAILED
            event.reason = Reason.PROCESSING_ERROR
            event.detail = f"failed {event.failures} times; last: {error}"[:500]
            log.error("webhook event %s failed %s times: parked for ops", event.pk, event.failures)
        event.save(
            update_fields=["failures", "attempts", "last_error", "status", "reason", "detail"]
        )


def webhook_event_failed(*, partner, event_id: int) -> bool:
    return (
        WebhookEvent.objects.for_partner(partner)
        .filter(pk=event_id, status=WebhookEvent.Status.FAILED)
        .exists()
    )


def webhook_event_retry(*, partner, event_id: int) -> WebhookEvent | None:
    """Ops (admin action): a failed event gets a fresh budget of attempts and is processed now."""
    WebhookEvent.objects.for_partner(partner).filter(
        pk=event_id, status=WebhookEvent.Status.FAILED
    ).update(status=WebhookEvent.Status.RECEIVED, reason="", failures=0)
    return webhook_event_process(partner=partner, event_id=event_id)


def _process(*, partner, event_id: int) -> WebhookEvent | None:
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
        _apply_locked(partner, event, event.settings)
    if event.status == WebhookEvent.Status.PARKED:
        log.info("webhook event %s parked: %s", event.pk, event.reason)
    return event


def _apply_locked(partner, event: WebhookEvent, settings_obj: PaymentSettings) -> None:
    """Apply `event` (locked by the caller, received or parked) and record the outcome on it,
    in the caller's transaction."""
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
        return
    _advisory_lock(partner.id, parsed.payment_id)
    outcome = _apply_processor_event(partner, settings_obj, parsed, event.signed_at)
    event.status, event.reason, event.detail = outcome.status, outcome.reason, outcome.detail
    event.payment = outcome.payment
    event.processed_at = timezone.now()
    event.failures = 0
    event.save(
        update_fields=[
            "status",
            "reason",
            "detail",
            "payment",
            "processed_at",
            "attempts",
            "failures",
        ]
    )


# --- batches ----------------------------------------------------------------------------------


@dataclass
class Batch:
    processed: int = 0  # events applied (processed, parked or invalid)
    failed: list[int] | None = None  # events whose processing raised (counted on the event)


def webhook_events_drain(*, partner, limit: int = BATCH_SIZE) -> Batch:
    """Process up to `limit` of the partner's received events, oldest first, one transaction
    per event: each is claimed with `SELECT … FOR UPDATE SKIP LOCKED`, so concurrent drains
    (and the per-event path above, which waits on the row lock and then finds the event no
    longer received) never apply an event twice, and none waits for another's event. An event
    that raises is counted on the event (`_record_failure`, the same bound as one at a time),
    left out for the rest of this drain and returned in `failed` for the caller to retry later:
    it never blocks the others. Order between events of one payment does not matter (see
    `_apply_processor_event`); they are serialised by the advisory lock."""
    batch = Batch(failed=[])
    settings_obj = None  # one endpoint per partner: read once per drain
    for _ in range(limit):
        claimed: list[int] = []
        try:
            with transaction.atomic():
                event = (
                    WebhookEvent.objects.for_partner(partner)
                    .select_for_update(of=("self",), skip_locked=True)
                    .filter(status=WebhookEvent.Status.RECEIVED)
                    .exclude(pk__in=batch.failed)
                    .order_by("received_at", "id")
                    .first()
                )
                if event is None:
                    break
                claimed.append(event.pk)
                if settings_obj is None or settings_obj.pk != event.settings_id:
                    settings_obj = (
                        PaymentSettings.objects.for_partner(partner)
                        .filter(pk=event.settings_id)
                        .first()
                    )
                _apply_locked(partner, event, settings_obj)
        except Exception as exc:
            if not claimed:
                raise
            _record_failure(partner=partner, event_id=claimed[0], exc=exc)
            log.exception("webhook event %s: processing failed in a batch", claimed[0])
            batch.failed.append(claimed[0])
            continue
        batch.processed += 1
        if event.status == WebhookEvent.Status.PARKED:
            log.info("webhook event %s parked: %s", event.pk, event.reason)
    return batch


def webhook_events_rematch(*, partner, limit: int = 1000) -> int:
    """After a successful sync: try the partner's parked events again (an invoice may have
    arrived, a balance changed). Returns how many were enqueued."""
    from ..tasks import process_webhook_event  # here: payments.tasks imports this module

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
    enqueue them again. Processing is idempotent, so an extra delivery costs nothing. Failed
    events (MAX_PROCESSING_FAILURES reached) are not "received": never re-queued here."""
    from ..tasks import process_webhook_event  # here: payments.tasks imports this module

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
