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
- Read-back (issue 16): Autotask answering 200 to the PATCH does not prove it stored what we
  sent (UNVERIFIED: that `"paidDate": null` clears the field, and how a date-time value is
  stored). So after each accepted PATCH the relay reads the invoice back (`GET /Invoices/{id}`
  through the same client: same limiter, one attempt, and the same claim fence, so a relay that
  lost its claim sends no GET either) and compares paidDate's date part, taken as written like
  the sync reads it (date-only or date-time, with or without a zone), with what it sent.
  Match: done, and open paidDate drift of the invoice is resolved (Autotask agrees with the
  ledger). Mismatch: the attempt's outcome is `mismatch`, naming what Autotask shows, and the row
  is retried with the usual backoff (the PATCH is sent again). Once MAX_READBACK_MISMATCHES
  read-backs of one version showed a mismatch, the row is settled as Autotask shows it (done,
  `autotask_paid_date` = Autotask's value: no endless PATCHes) and a `writeback_not_applied`
  drift row records both values for the drift report (`reconcile.drift_record`); a later
  matching read-back or the daily reconcile resolves it.
- A read-back that fails (throttled, budget spent, transient, 5xx, an unreadable or missing
  record) does not resend the PATCH: Autotask accepted it, so the row is done as before and the
  failure is logged and noted on the attempt (error kind `readback:<kind>`). The daily re-read
  (reconcile.py) is the backstop. Retrying would send another PATCH (or hold the row) for a
  check, and throttling must never keep or fail a row that Autotask already accepted.
- Never written: invoices created here (R7) and invoices paid in Autotask itself.
- Batches (issue 19): the rows a webhook batch makes due are collected (`sends_deferred`) and
  sent by one task (`writeback_send_batch`), each through `writeback_send` with its own
  claim, fence, attempt row and Retry-After. Only the batch's own rows (each had no message
  of its own), not every due row of the partner: a row with a message pending (a manual
  payment, a retry countdown, the sweep) is left to it, so two relays rarely race for one.
  HTTP sessions are pooled per Autotask zone by the client (integrations/autotask/
  sessions.py), so a batch's PATCHes reuse kept-alive connections.

The tasks that run the relay and the sweep (`payments.writeback.send`, `send_batch`, `sweep`)
are in payments/tasks.py.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
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

from ..models import ReconciliationDrift, WritebackAttempt, WritebackOutbox
from .reconcile import drift_record

log = logging.getLogger(__name__)

State = WritebackOutbox.State
LEASE_FACTOR = 3  # lease = this many times the client's longest single request
MAX_ATTEMPTS = 8  # per desired version; then FAILED, visible to ops
MAX_READBACK_MISMATCHES = 3  # per version: then settled as Autotask shows it, drift recorded
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0
SWEEP_BATCH = 500
SEND_BATCH_SECONDS = 60.0  # a batch task starts no new row after this long (writeback_send_batch)


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
    due = invoice.total - invoice.credits
    fully_paid = invoice.paid_here > 0 and invoice.paid_here >= due
    if fully_paid and invoice.paid_in_autotask_on is None:
        # The common case, an invoice paid here for the first time: one INSERT … ON CONFLICT
        # DO NOTHING instead of a SELECT then an INSERT. A row already there (the unique
        # invoice key) is locked and updated below.
        outbox = _insert_outbox(invoice, desired=paid_on, now=timezone.now())
        if outbox is not None:
            enqueue_send(outbox)
            return outbox
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


def _insert_outbox(invoice: Invoice, *, desired: date, now) -> WritebackOutbox | None:
    """INSERT the invoice's first outbox row unless it has one. The row, or None when one
    exists (nothing written)."""
    row = WritebackOutbox(
        partner_id=invoice.partner_id,
        invoice=invoice,
        desired_paid_date=desired,
        version=1,
        state=State.PENDING,
        next_attempt_at=now,
    )
    meta = WritebackOutbox._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(row, add=True), db_connection) for f in fields]
    # Table and column names come from the model's metadata; values are parameters.
    quote = db_connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 # nosec B608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({quote(meta.get_field('invoice').column)}) DO NOTHING RETURNING id"
    )
    with db_connection.cursor() as cur:
        cur.execute(sql, values)
        found = cur.fetchone()
    if found is None:
        return None
    row.pk = found[0]
    row._state.adding = False
    return row


class _Batch:
    """The write-backs a webhook batch made due (`sends_deferred`)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int]] = []
        self.closed = False

    def add(self, partner_id: int, outbox_id: int) -> None:
        if self.closed:  # committed after the batch ended (a caller's outer transaction)
            _publish_send(partner_id, [outbox_id])
        else:
            self.rows.append((partner_id, outbox_id))

    def flush(self) -> None:
        self.closed = True
        by_partner: dict[int, list[int]] = {}
        for partner_id, outbox_id in self.rows:
            ids = by_partner.setdefault(partner_id, [])
            if outbox_id not in ids:
                ids.append(outbox_id)
        for partner_id, ids in by_partner.items():
            _publish_send(partner_id, ids)


_deferred: ContextVar[_Batch | None] = ContextVar("writeback_deferred", default=None)


@contextlib.contextmanager
def sends_deferred() -> Iterator[_Batch]:
    """Within the block, `enqueue_send` without a countdown collects (partner id, outbox id)
    once the transaction commits instead of publishing a task each; on leaving the block one
    task per partner is published for them (`send_batch`: `writeback_send_batch`). A row
    whose publish failed is still pending and due in PostgreSQL: the sweep sends it."""
    batch = _Batch()
    token = _deferred.set(batch)
    try:
        yield batch
    finally:
        _deferred.reset(token)
        batch.flush()


def _publish_send(partner_id: int, outbox_ids: list[int]) -> None:
    """One task for the rows: `send` for one (as outside a batch), `send_batch` for more."""
    from ..tasks import send, send_batch  # here: payments.tasks imports this module

    try:
        if len(outbox_ids) == 1:
            send.delay(partner_id, outbox_ids[0])
        else:
            send_batch.delay(partner_id, outbox_ids)
    except Exception:  # the broker is down: the rows are due in PostgreSQL, the sweep sends them
        log.exception("write-back task for partner %s not enqueued; the sweep sends it", partner_id)


def enqueue_send(outbox: WritebackOutbox, countdown: float | None = None) -> None:
    from ..tasks import send  # here: payments.tasks imports this module

    partner_id, outbox_id = outbox.partner_id, outbox.pk
    deferred = _deferred.get()
    if deferred is not None and countdown is None:
        transaction.on_commit(lambda: deferred.add(partner_id, outbox_id))
        return
    transaction.on_commit(
        lambda: send.apply_async((partner_id, outbox_id), countdown=countdown), robust=True
    )


# --- the relay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    outcome: str  # sent, unchanged, retry, parked, failed, not_claimed, not_due, not_applied
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


def writeback_send(*, partner, outbox_id: int, client_factory=None, connection=None) -> SendResult:
    """Send one invoice's current desired paidDate (see module docstring). `connection` is the
    partner's AutotaskConnection when the caller read it already (a batch)."""
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

    if connection is None:
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
    else:
        read = _read_back(client, invoice.autotask_id)
    finally:
        client.close()

    if read.lost is not None:
        # Accepted, but the claim was taken before the read-back: no GET was sent, and the row
        # belongs to the relay that took over (it sends the current version again).
        _complete(attempt, WritebackAttempt.Outcome.SENT, "readback:lease_lost", str(read.lost))
        log.warning("%s (after the PATCH was accepted)", read.lost)
        return SendResult("not_claimed")
    if read.failed is not None:
        kind, message = read.failed
        _complete(attempt, WritebackAttempt.Outcome.SENT, f"readback:{kind}"[:40], message)
        log.warning(
            "write-back of invoice %s: PATCH accepted, read-back failed (%s); done without "
            "it, the daily re-read checks it",
            invoice.pk,
            kind,
        )
    elif read.shown != desired:
        return _mismatch(partner, outbox, token, attempt, desired, read.shown)
    else:
        _resolve_drift(partner, invoice.pk)
        _complete(attempt, WritebackAttempt.Outcome.SENT)
    again = _finish_sent(partner, outbox_id, token, version, desired, sent=True)
    if again:
        enqueue_send(outbox)
    return SendResult("sent", again=again)


def writeback_send_batch(
    *, partner, outbox_ids: list[int], client_factory=None
) -> tuple[list[tuple[int, SendResult]], list[int]]:
    """Send the rows of one webhook batch in turn, each through `writeback_send` unchanged:
    its own claim, fence, attempt row and Retry-After (a row another relay holds answers
    "not_claimed", a row waiting out a Retry-After "not_due"). The partner's connection is read
    once. No new row after SEND_BATCH_SECONDS (capped at max_countdown(): a task stays under
    the broker's visibility timeout). Returns (outbox id, result) per row sent and the ids
    left for another task."""
    started = time.monotonic()
    budget = min(SEND_BATCH_SECONDS, max_countdown())
    connection = connection_for(partner=partner)  # once per batch, not per row
    results: list[tuple[int, SendResult]] = []
    for index, outbox_id in enumerate(outbox_ids):
        if results and time.monotonic() - started >= budget:
            return results, list(outbox_ids[index:])
        result = writeback_send(
            partner=partner,
            outbox_id=outbox_id,
            client_factory=client_factory,
            connection=connection,
        )
        results.append((outbox_id, result))
    return results, []


@dataclass(frozen=True)
class ReadBack:
    shown: date | None = None  # Autotask's paidDate (date part as written), when read
    failed: tuple[str, str] | None = None  # (kind, message): the GET failed, nothing compared
    lost: ClaimLost | None = None  # the claim was gone: no GET sent


def _read_back(client, autotask_id: int) -> ReadBack:
    """GET the invoice after an accepted PATCH (see module docstring). The client is the
    PATCH's: its `before_send` fence renews the claim just before the GET (and before a
    threshold refresh, if the limiter needs one), its limiter holds the GET to the budget and
    thread limit, and its retries are off (one GET, whatever the answer)."""
    try:
        record = client.get_invoice(autotask_id)
    except ClaimLost as exc:
        return ReadBack(lost=exc)
    except AutotaskError as exc:
        return ReadBack(failed=(exc.kind, exc.message))
    if record is None:
        return ReadBack(failed=("not_found", f"Autotask invoice {autotask_id} was not found"))
    # The typed record takes the date part as written, without zone conversion (records.py),
    # exactly as the sync and the daily reconcile read it.
    return ReadBack(shown=record.paid_date)


def _day(value: date | None) -> str:
    return value.isoformat() if value else "none"


def _mismatch(partner, outbox, token, attempt, sent: date | None, shown: date | None):
    """The PATCH was accepted but the read-back shows `shown`: retry with backoff, or settle
    after MAX_READBACK_MISMATCHES for this version (see module docstring)."""
    Outcome = WritebackAttempt.Outcome
    version, invoice = attempt.version, outbox.invoice
    text = (
        f"Autotask accepted the update, but the invoice read back shows paid date "
        f"{_day(shown)}, not {_day(sent)}."
    )
    # Read-backs of this version that showed a mismatch, this one included. A match settles
    # the version (done), so these are consecutive.
    seen = 1 + (
        WritebackAttempt.objects.for_partner(partner)
        .filter(outbox_id=outbox.pk, version=version, outcome=Outcome.MISMATCH)
        .count()
    )
    log.warning(
        "write-back of invoice %s not applied (%s/%s): %s",
        invoice.pk,
        seen,
        MAX_READBACK_MISMATCHES,
        text,
    )
    with transaction.atomic():
        # The invoice's lock first, as payments take it (invoice, then outbox row): no payment
        # changes the version meanwhile, and the drift row's insert cannot deadlock with one.
        Invoice.objects.for_partner(partner).select_for_update().filter(pk=invoice.pk).first()
        current = (
            WritebackOutbox.objects.for_partner(partner)
            .filter(pk=outbox.pk, claim_token=token)
            .values_list("version", flat=True)
            .first()
        )
        now = timezone.now()
        if current is None:  # claim lost meanwhile: the new owner sends again
            _complete(attempt, Outcome.MISMATCH, "readback_mismatch", text)
            return SendResult("not_claimed")
        if current != version:
            # The desired state changed while we sent: send the new one now; this version's
            # mismatch no longer matters.
            _complete(attempt, Outcome.MISMATCH, "readback_mismatch", text)
            _release(outbox.pk, token, state=State.PENDING, next_attempt_at=now, ever_sent=True)
            enqueue_send(outbox)
            return SendResult("retry", again=True)
        if seen < MAX_READBACK_MISMATCHES:
            delay = backoff(outbox.attempts)
            _complete(attempt, Outcome.MISMATCH, "readback_mismatch", text, retry_in=delay)
            _release(
                outbox.pk,
                token,
                state=State.PENDING,
                attempts=outbox.attempts + 1,
                next_attempt_at=now + timedelta(seconds=delay),
                last_error_kind="readback_mismatch",
                last_error=text,
                ever_sent=True,
                sent_at=now,
            )
            return SendResult("retry", retry_in=delay)
        settled = f"{text} Left as Autotask shows it after {seen} tries; reported as drift."
        _complete(attempt, Outcome.MISMATCH, "readback_mismatch", settled)
        _release(
            outbox.pk,
            token,
            state=State.DONE,
            sent_version=version,
            autotask_paid_date=shown,
            attempts=0,
            next_attempt_at=now,
            last_error_kind="not_applied",
            last_error=settled,
            ever_sent=True,
            sent_at=now,
        )
        drift_record(
            partner,
            invoice_id=invoice.pk,
            reason=ReconciliationDrift.Reason.WRITEBACK_NOT_APPLIED,
            autotask_value=shown,
            ledger_value=sent,
            detail=(
                f"Autotask invoice {invoice.autotask_id}: paidDate {_day(shown)} in Autotask "
                f"after we sent {_day(sent)} {seen} times (each accepted); not adopted."
            ),
            now=now,
        )
    return SendResult("not_applied")


# Drift about an invoice's paidDate: a read-back that matches what we sent settles it.
PAID_DATE_DRIFT = (
    ReconciliationDrift.Reason.PAID_DATE_CLEARED,
    ReconciliationDrift.Reason.PAID_DATE_CHANGED,
    ReconciliationDrift.Reason.PAID_DATE_NOT_CLEARED,
    ReconciliationDrift.Reason.WRITEBACK_NOT_APPLIED,
)


def _resolve_drift(partner, invoice_id: int) -> None:
    ReconciliationDrift.objects.for_partner(partner).filter(
        invoice_id=invoice_id, reason__in=PAID_DATE_DRIFT, resolved_at__isnull=True
    ).update(resolved_at=timezone.now())


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
    )
    if sent:
        fields.update(ever_sent=True, sent_at=now)
    # The common case in one statement: the version we sent is still the desired one.
    done = (
        WritebackOutbox.objects.filter(pk=outbox_id, claim_token=token, version=version).update(
            claim_token=None, claimed_at=None, **fields, state=State.DONE
        )
        == 1
    )
    if done:
        return False
    _release(outbox_id, token, **fields, state=State.PENDING)
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
