"""Write-back of paidDate to Autotask through an outbox (R4, R9).

- The transaction that changes an invoice's payments also writes the invoice's outbox row: the
  *desired* paidDate (a date when fully paid here, None to clear) and a new `version`
  (`outbox_update`). After commit a task sends it.
- The relay (`writeback_send`) claims a row with a conditional UPDATE (only one relay sends an
  invoice at a time, however many run), writes an attempt row, sends `PATCH /Invoices
  {"id", "paidDate"}` once (the client's own retries are off: every PATCH is an attempt row),
  and finishes with an UPDATE fenced by its claim token. If the desired state changed meanwhile,
  the row goes back to pending and the latest state is sent next: never a replay of old events.
- The claim is a lease (`lease()`, a few times the client's connect + read timeout). Just before
  each HTTP request the relay renews it with an UPDATE fenced by its token; a relay that lost it
  (paused past the lease, another relay took over) sends nothing. So a claim outlives its
  relay's last request by at most one request: two relays never PATCH one invoice at once.
- Transient and throttled errors: backoff with full jitter, at least the server's Retry-After.
  Waits below MAX_COUNTDOWN become a task countdown; any wait is also `next_attempt_at`, which
  the periodic sweep reads, so a message the broker drops is sent anyway. Transient errors
  fail the row after MAX_ATTEMPTS; throttling (429 or a 500 with the threshold text) and a
  spent budget never do: the row waits, pending, however long Autotask asks.
- Auth errors park the row and flag the connection (needs attention); other 4xx fail the row.
  Ops retry or cancel rows (`writeback_retry`, `writeback_cancel`).
- Never written: invoices created here (R7) and invoices paid in Autotask itself.

The tasks that run the relay and the sweep (`payments.writeback.send`, `payments.writeback.sweep`)
are in payments/tasks.py.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from config.encryption import SecretUnavailable
from customers.models import Source
from integrations import clients
from integrations.autotask.errors import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskError,
    AutotaskThrottled,
)
from integrations.autotask.retry import RetryPolicy
from integrations.models import AutotaskConnection
from integrations.selectors import connection_for
from invoices.models import Invoice

from ..models import WritebackAttempt, WritebackOutbox

log = logging.getLogger(__name__)

State = WritebackOutbox.State
LEASE_FACTOR = 3  # lease = this many times the client's longest single request
MAX_ATTEMPTS = 8  # per desired version; then FAILED, visible to ops
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0
SWEEP_BATCH = 500


def max_countdown() -> float:
    # Countdowns stay well under the broker's visibility timeout (RELIABILITY §2); longer
    # waits are left to next_attempt_at and the sweep.
    return settings.CELERY_VISIBILITY_TIMEOUT / 2


def lease() -> timedelta:
    """How long a claim lasts without renewal. A SENDING row whose claim is older lost its relay
    (worker killed). The relay renews the claim just before each request (`_fence`), and a
    request lasts at most connect + read timeout (one PATCH: the client's own retries are off),
    so three times that is ample: 105 s in production, 21 s under the test settings."""
    connect = float(getattr(settings, "AUTOTASK_CONNECT_TIMEOUT_SECONDS", 5.0))
    read = float(getattr(settings, "AUTOTASK_TIMEOUT_SECONDS", 30.0))
    return timedelta(seconds=LEASE_FACTOR * (connect + read))


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**attempt)), attempt counted from 0."""
    return (rng or random).uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)))


# --- the desired state ------------------------------------------------------------------------


def outbox_update(*, invoice: Invoice, paid_on: date) -> WritebackOutbox | None:
    """Record the paidDate Autotask should now have for `invoice` (locked by the caller, with
    fresh amounts). Called in the transaction that changed its payments."""
    if invoice.source != Source.AUTOTASK or invoice.autotask_id is None:
        return None  # created here: never sent to Autotask (R7)
    outbox = (
        WritebackOutbox.objects.for_partner(invoice.partner_id)
        .select_for_update()
        .filter(invoice=invoice)
        .first()
    )
    ours = outbox is not None and outbox.autotask_paid_date is not None
    if invoice.paid_in_autotask_on is not None and not (
        ours and invoice.paid_in_autotask_on == outbox.autotask_paid_date
    ):
        return None  # paid in Autotask itself: that paidDate is Autotask's, never ours to touch
    due = invoice.total - invoice.credits
    fully_paid = invoice.paid_here > 0 and invoice.paid_here >= due
    desired = paid_on if fully_paid else None
    now = timezone.now()
    if outbox is None:
        if desired is None:
            return None  # never marked paid by us: nothing to clear
        outbox = WritebackOutbox.objects.create(
            partner_id=invoice.partner_id,
            invoice=invoice,
            desired_paid_date=desired,
            version=1,
            state=State.PENDING,
            next_attempt_at=now,
        )
    else:
        if outbox.desired_paid_date == desired and outbox.state != State.CANCELLED:
            return outbox
        outbox.desired_paid_date = desired
        outbox.version += 1
        outbox.attempts = 0
        outbox.last_error_kind = outbox.last_error = ""
        # A row waiting out a Retry-After (or a backoff) keeps waiting: the server's answer was
        # about this invoice's requests, not about one version of it (SY-6: never a PATCH
        # before Retry-After elapsed, even when the payment changes meanwhile).
        if outbox.next_attempt_at is None or outbox.next_attempt_at < now:
            outbox.next_attempt_at = now
        if desired == outbox.autotask_paid_date and outbox.state != State.SENDING:
            # Back to what Autotask already has (pay → delete → pay again before the relay
            # ran): nothing to send.
            outbox.state = State.DONE
            outbox.sent_version = outbox.version
        elif outbox.state != State.SENDING:
            # A SENDING row stays claimed: its relay sees the new version when it finishes.
            outbox.state = State.PENDING
        outbox.save()
    if outbox.state == State.PENDING:
        enqueue_send(outbox)
    return outbox


def enqueue_send(outbox: WritebackOutbox, countdown: float | None = None) -> None:
    from ..tasks import send  # here: payments.tasks imports this module

    partner_id, outbox_id = outbox.partner_id, outbox.pk
    transaction.on_commit(
        lambda: send.apply_async((partner_id, outbox_id), countdown=countdown), robust=True
    )


# --- the relay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    outcome: str  # sent, unchanged, retry, parked, failed, not_claimed, not_due
    retry_in: float | None = None
    again: bool = False  # the desired state changed while sending: send once more


def _client_for(connection: AutotaskConnection, *, before_send=None):
    # One PATCH per attempt: the relay retries itself, with a row per attempt and without
    # holding a worker through backoff sleeps.
    return clients.build_client(
        connection, retry_policy=RetryPolicy(max_attempts=1), before_send=before_send
    )


def _claim(partner, outbox_id: int, token: uuid.UUID) -> bool:
    now = timezone.now()
    due = Q(state=State.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    stale = Q(state=State.SENDING, claimed_at__lt=now - lease())
    return (
        WritebackOutbox.objects.for_partner(partner)
        .filter(pk=outbox_id)
        .filter(due | stale)
        .update(state=State.SENDING, claim_token=token, claimed_at=now)
        == 1
    )


class ClaimLost(Exception):
    """The relay's claim expired and was taken over: it must not send."""


def _renew(outbox_id: int, token: uuid.UUID) -> bool:
    return (
        WritebackOutbox.objects.filter(pk=outbox_id, claim_token=token, state=State.SENDING).update(
            claimed_at=timezone.now()
        )
        == 1
    )


def _fence(outbox_id: int, token: uuid.UUID):
    """The client's `before_send`: renew the claim just before every HTTP request (zone lookup,
    threshold, PATCH), after any limiter wait; raise ClaimLost instead of sending when it is
    gone."""

    def renew_or_stop():
        if not _renew(outbox_id, token):
            raise ClaimLost(f"write-back outbox {outbox_id}: claim lost before sending")

    return renew_or_stop


def _release(outbox_id: int, token: uuid.UUID, **fields) -> bool:
    return (
        WritebackOutbox.objects.filter(pk=outbox_id, claim_token=token).update(
            claim_token=None, claimed_at=None, **fields
        )
        == 1
    )


def writeback_send(*, partner, outbox_id: int, client_factory=None) -> SendResult:
    """Send one invoice's current desired paidDate (see module docstring)."""
    token = uuid.uuid4()
    if not _claim(partner, outbox_id, token):
        row = (
            WritebackOutbox.objects.for_partner(partner)
            .filter(pk=outbox_id)
            .values("state", "next_attempt_at")
            .first()
        )
        if row and row["state"] == State.PENDING and row["next_attempt_at"]:
            wait = (row["next_attempt_at"] - timezone.now()).total_seconds()
            return SendResult("not_due", retry_in=max(wait, 0.0))
        return SendResult("not_claimed")
    outbox = (
        WritebackOutbox.objects.for_partner(partner).select_related("invoice").get(pk=outbox_id)
    )
    invoice = outbox.invoice
    version, desired = outbox.version, outbox.desired_paid_date

    if desired == outbox.autotask_paid_date and outbox.sent_version > 0:
        _finish_sent(partner, outbox_id, token, version, desired, sent=False)
        return SendResult("unchanged")
    if invoice.source != Source.AUTOTASK or invoice.autotask_id is None:
        _release(outbox_id, token, state=State.CANCELLED, last_error="created here (R7)")
        return SendResult("failed")

    connection = connection_for(partner=partner)
    if connection is None or not connection.is_active:
        _release(
            outbox_id,
            token,
            state=State.PARKED,
            last_error_kind="not_connected",
            last_error="Autotask is not connected.",
        )
        return SendResult("parked")

    started = timezone.now()
    attempt = WritebackAttempt.objects.create(
        partner=partner, outbox=outbox, version=version, paid_date=desired, started_at=started
    )
    try:
        client = (client_factory or _client_for)(connection, before_send=_fence(outbox_id, token))
    except SecretUnavailable as exc:
        connection.record_error("credentials", str(exc), needs_attention=True)
        return _park(outbox_id, token, attempt, "credentials", str(exc))
    try:
        client.set_invoice_paid_date(invoice.autotask_id, desired)
    except ClaimLost as exc:
        # Nothing sent; the row belongs to the relay that took over: leave it alone.
        _complete(attempt, WritebackAttempt.Outcome.RETRY, "lease_lost", str(exc))
        log.warning("%s", exc)
        return SendResult("not_claimed")
    except AutotaskAuthError as exc:
        connection.record_error(exc.kind, exc.message, needs_attention=True)
        return _park(outbox_id, token, attempt, f"auth:{exc.kind}", exc.message)
    except AutotaskError as exc:
        if not exc.retryable:
            _complete(attempt, WritebackAttempt.Outcome.FAILED, exc.kind, exc.message)
            _release(
                outbox_id,
                token,
                state=State.FAILED,
                attempts=F("attempts") + 1,
                last_error_kind=exc.kind,
                last_error=exc.message[:2000],
            )
            log.warning("write-back of invoice %s failed: %s", invoice.pk, exc.kind)
            return SendResult("failed")
        return _retry_later(outbox, token, attempt, exc)
    finally:
        client.close()

    _complete(attempt, WritebackAttempt.Outcome.SENT)
    again = _finish_sent(partner, outbox_id, token, version, desired, sent=True)
    if again:
        enqueue_send(outbox)
    return SendResult("sent", again=again)


def _finish_sent(partner, outbox_id, token, version, desired, *, sent: bool) -> bool:
    """Record `desired` as Autotask's state. Returns True when a newer version is waiting."""
    now = timezone.now()
    fields = dict(
        sent_version=version,
        autotask_paid_date=desired,
        attempts=0,
        last_error_kind="",
        last_error="",
        next_attempt_at=now,
        state=Case(When(version=version, then=Value(State.DONE)), default=Value(State.PENDING)),
    )
    if sent:
        fields.update(ever_sent=True, sent_at=now)
    _release(outbox_id, token, **fields)
    return (
        WritebackOutbox.objects.for_partner(partner)
        .filter(pk=outbox_id, state=State.PENDING)
        .exists()
    )


def _complete(attempt, outcome, kind: str = "", message: str = "", retry_in=None) -> None:
    attempt.outcome, attempt.error_kind, attempt.error = outcome, kind, message[:2000]
    attempt.retry_in_seconds, attempt.finished_at = retry_in, timezone.now()
    attempt.save(
        update_fields=["outcome", "error_kind", "error", "retry_in_seconds", "finished_at"]
    )


def _park(outbox_id, token, attempt, kind: str, message: str) -> SendResult:
    _complete(attempt, WritebackAttempt.Outcome.PARKED, kind, message)
    _release(
        outbox_id,
        token,
        state=State.PARKED,
        attempts=F("attempts") + 1,
        last_error_kind=kind[:40],
        last_error=message[:2000],
    )
    log.warning("write-back outbox %s parked: %s", outbox_id, kind)
    return SendResult("parked")


def _retry_later(outbox, token, attempt, exc: AutotaskError) -> SendResult:
    if isinstance(exc, (AutotaskThrottled, AutotaskBudgetExhausted)):
        return _wait_politely(outbox, token, attempt, exc)
    attempts = outbox.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        _complete(attempt, WritebackAttempt.Outcome.FAILED, exc.kind, exc.message)
        _release(
            outbox.pk,
            token,
            state=State.FAILED,
            attempts=attempts,
            last_error_kind=exc.kind,
            last_error=f"gave up after {attempts} attempts: {exc.message}"[:2000],
        )
        return SendResult("failed")
    delay = backoff(attempts - 1)
    _complete(attempt, WritebackAttempt.Outcome.RETRY, exc.kind, exc.message, retry_in=delay)
    # Measured from after the failed answer, so the wait is never shorter than asked for.
    _release(
        outbox.pk,
        token,
        state=State.PENDING,
        attempts=attempts,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error_kind=exc.kind,
        last_error=exc.message[:2000],
    )
    return SendResult("retry", retry_in=delay)


def _wait_politely(outbox, token, attempt, exc: AutotaskError) -> SendResult:
    """Throttling (a 429, or a 500 carrying the threshold or thread-limit text: the client
    maps both to AutotaskThrottled) and our spent request budget are Autotask asking us to
    wait, not a failure of this write-back: they never count towards MAX_ATTEMPTS (an hourly
    threshold can last the hour; eight quick backoffs would fail the row for good). The row
    stays pending; the wait grows with each such answer for this version (full jitter up to
    BACKOFF_CAP) and is never shorter than the server's Retry-After or the budget's reset."""
    waited = (
        WritebackAttempt.objects.for_partner(outbox.partner_id)
        .filter(
            outbox_id=outbox.pk,
            version=attempt.version,
            outcome=WritebackAttempt.Outcome.RETRY,
            error_kind__in=["throttled", "budget"],
        )
        .count()
    )
    delay = backoff(waited)
    if isinstance(exc, AutotaskThrottled) and exc.retry_after is not None:
        delay = max(delay, exc.retry_after)  # never before the server's Retry-After
    if isinstance(exc, AutotaskBudgetExhausted):
        delay = max(delay, (exc.resume_at - timezone.now()).total_seconds())
    _complete(attempt, WritebackAttempt.Outcome.RETRY, exc.kind, exc.message, retry_in=delay)
    _release(
        outbox.pk,
        token,
        state=State.PENDING,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error_kind=exc.kind,
        last_error=exc.message[:2000],
    )
    return SendResult("retry", retry_in=delay)


# --- ops --------------------------------------------------------------------------------------


def writeback_retry(*, outbox: WritebackOutbox) -> bool:
    """Ops: send a parked, failed or cancelled row again now."""
    with transaction.atomic():
        changed = (
            WritebackOutbox.objects.for_partner(outbox.partner_id)
            .filter(pk=outbox.pk, state__in=[State.PARKED, State.FAILED, State.CANCELLED])
            .update(
                state=State.PENDING,
                attempts=0,
                next_attempt_at=timezone.now(),
                last_error_kind="",
                last_error="",
            )
        )
        if changed:
            enqueue_send(outbox)
    return bool(changed)


def writeback_cancel(*, outbox: WritebackOutbox) -> bool:
    """Ops: stop sending this row (it stays visible; a later payment change re-arms it)."""
    return bool(
        WritebackOutbox.objects.for_partner(outbox.partner_id)
        .filter(pk=outbox.pk)
        .exclude(state__in=[State.DONE, State.SENDING])
        .update(state=State.CANCELLED)
    )


def writeback_sweep(*, limit: int = SWEEP_BATCH) -> int:
    """Enqueue every due row (pending and due, or sending with an expired lease). Rows live in
    PostgreSQL, so whatever the broker dropped is sent by the next sweep."""
    from ..tasks import send  # here: payments.tasks imports this module

    now = timezone.now()
    rows = list(
        WritebackOutbox.objects.filter(
            Q(state=State.PENDING, next_attempt_at__lte=now)
            | Q(state=State.PENDING, next_attempt_at__isnull=True)
            | Q(state=State.SENDING, claimed_at__lt=now - lease())
        )
        .order_by("next_attempt_at")
        .values_list("partner_id", "id")[:limit]
    )
    for partner_id, outbox_id in rows:
        send.delay(partner_id, outbox_id)
    return len(rows)
