"""The invoice timeline: one chronological list that answers "why is this invoice (not) paid,
(not) synced?" for a partner's users, in plain words.

It reads the sync's records (the run that brought the invoice, every change old → new) and the
payments' (payments, write-back attempts with Autotask's answer, reconciliation drift), so it
lives in payments, the lowest layer that sees both. Every query is scoped to the partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from invoices.models import Invoice
from sync.models import ChangeLogEntry, SyncRun
from sync.wording import describe_run, field_label, field_value

from .models import (
    Payment,
    PaymentMove,
    ReconciliationDrift,
    WritebackAttempt,
    WritebackOutbox,
)


class Kind:
    CREATED = "created"
    SYNCED = "synced"
    CHANGED = "changed"
    PAYMENT = "payment"
    WRITEBACK = "writeback"
    DRIFT = "drift"
    ARCHIVED = "archived"


KINDS = [
    Kind.CREATED,
    Kind.SYNCED,
    Kind.CHANGED,
    Kind.PAYMENT,
    Kind.WRITEBACK,
    Kind.DRIFT,
    Kind.ARCHIVED,
]


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    title: str
    detail: str = ""
    run_id: int | None = None
    payment_id: int | None = None
    link: str | None = None  # a dashboard page about the entry (the sync run)


DRIFT_TITLES = {
    ReconciliationDrift.Reason.PAID_DATE_CLEARED: (
        "Autotask cleared the paid date, but payments here cover the invoice"
    ),
    ReconciliationDrift.Reason.PAID_DATE_CHANGED: (
        "Autotask shows another paid date than the one we sent"
    ),
    ReconciliationDrift.Reason.PAID_DATE_NOT_CLEARED: (
        "Autotask still shows a paid date that we cleared"
    ),
    ReconciliationDrift.Reason.WRITEBACK_NOT_APPLIED: (
        "Autotask accepted our paid date but did not apply it"
    ),
    ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT: "Voided in Autotask after payment here",
}

SOURCE_WORDS = {
    Payment.Source.PROCESSOR: "from the payment processor",
    Payment.Source.MANUAL: "recorded by hand",
}


_label = field_label
_value = field_value


def _run_link(run_id: int | None) -> str | None:
    return reverse("sync:run-detail", args=[run_id]) if run_id else None


def _run_words(run: SyncRun | None) -> str:
    return f"the {describe_run(run)} (run #{run.pk})" if run is not None else "a change made here"


def _change_title(entry: ChangeLogEntry) -> str:
    field, old, new = entry.field, entry.old_value, entry.new_value
    if field == "paid_in_autotask_on":
        if not new:
            return "Paid date cleared in Autotask"
        return "Marked paid in Autotask" if not old else "Paid date changed in Autotask"
    if field == "voided":
        return "Voided in Autotask" if _value(field, new) == "yes" else "No longer void in Autotask"
    if field == "missing_in_autotask_since":
        return "No longer found in Autotask" if new else "Found in Autotask again"
    return f"{_label(field)} changed"


def _brought_by(*, partner, invoice: Invoice) -> SyncRun | None:
    """The sync run that created the invoice here: the run in progress when the row was
    created (creates are not in the change log, only changes are)."""
    runs = SyncRun.objects.for_partner(partner).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=invoice.created_at),
        started_at__lte=invoice.created_at,
    )
    return runs.order_by("-started_at", "-id").first()


def invoice_timeline(*, partner, invoice: Invoice) -> list[TimelineEntry]:
    """Everything that happened to `invoice`, oldest first (ties: in the order it happened)."""
    if invoice.partner_id != partner.pk:
        raise ValueError("invoice of another partner")
    entries: list[TimelineEntry] = []

    # --- where it came from ------------------------------------------------------------------
    changes = list(
        ChangeLogEntry.objects.for_partner(partner)
        .filter(record_type="invoice", record_id=invoice.pk)
        .select_related("run")
        .order_by("created_at", "id")
    )
    if invoice.source == "autotask":
        if invoice.autotask_created_at:
            entries.append(
                TimelineEntry(
                    at=invoice.autotask_created_at,
                    kind=Kind.CREATED,
                    title="Created in Autotask",
                    detail=f"Autotask invoice id {invoice.autotask_id}.",
                )
            )
        run = _brought_by(partner=partner, invoice=invoice)
        entries.append(
            TimelineEntry(
                at=invoice.created_at,
                kind=Kind.SYNCED,
                title="Synced from Autotask",
                detail=(
                    f"Brought in by {_run_words(run)}."
                    if run
                    else "Brought in by a sync from Autotask."
                ),
                run_id=run.pk if run else None,
                link=_run_link(run.pk if run else None),
            )
        )
    else:
        entries.append(
            TimelineEntry(
                at=invoice.created_at,
                kind=Kind.CREATED,
                title="Created here",
                detail="Invoices created here are never sent to Autotask.",
            )
        )

    # --- every change, old → new -------------------------------------------------------------
    for change in changes:
        old, new = _value(change.field, change.old_value), _value(change.field, change.new_value)
        entries.append(
            TimelineEntry(
                at=change.created_at,
                kind=Kind.CHANGED,
                title=_change_title(change),
                detail=f"{_label(change.field)}: {old} → {new}, by {_run_words(change.run)}.",
                run_id=change.run_id,
                link=_run_link(change.run_id),
            )
        )
    if invoice.archived_at:
        entries.append(
            TimelineEntry(
                at=invoice.archived_at,
                kind=Kind.ARCHIVED,
                title="Archived here",
                detail=(
                    "Hidden from lists. Syncs keep only its paid and void status up to date; "
                    "it cannot take payments until it is unarchived."
                ),
            )
        )

    # --- payments ----------------------------------------------------------------------------
    payments = Payment.objects.for_partner(partner).filter(invoice=invoice).order_by("id")
    for p in payments:
        what = f"{p.amount} {p.currency}, {p.get_method_display().lower()}"
        how = SOURCE_WORDS.get(p.source, p.get_source_display())
        note = f" Note: {p.note}" if p.note else ""
        entries.append(
            TimelineEntry(
                at=p.received_at,
                kind=Kind.PAYMENT,
                title="Payment received",
                detail=f"{what}, {how}.{note}",
                payment_id=p.pk,
            )
        )
        for at, title in ((p.refunded_at, "Payment refunded"), (p.deleted_at, "Payment deleted")):
            if at:
                entries.append(
                    TimelineEntry(
                        at=at,
                        kind=Kind.PAYMENT,
                        title=title,
                        detail=f"{what}: no longer counts towards the invoice.",
                        payment_id=p.pk,
                    )
                )

    # --- payments moved from a voided invoice to its replacement ------------------------------
    moves = (
        PaymentMove.objects.for_partner(partner)
        .filter(Q(from_invoice=invoice) | Q(to_invoice=invoice))
        .select_related("from_invoice", "to_invoice")
        .order_by("id")
    )
    for m in moves:
        outgoing = m.from_invoice_id == invoice.pk
        other = m.to_invoice if outgoing else m.from_invoice
        entries.append(
            TimelineEntry(
                at=m.created_at,
                kind=Kind.PAYMENT,
                title=(
                    f"Payment moved to invoice {other.number}"
                    if outgoing
                    else f"Payment moved here from voided invoice {other.number}"
                ),
                detail=f"{m.amount} {invoice.currency}, moved via {m.via}.",
                payment_id=m.payment_id,
            )
        )

    # --- write-back to Autotask, attempt by attempt --------------------------------------------
    outbox = WritebackOutbox.objects.for_partner(partner).filter(invoice=invoice).first()
    if outbox is not None:
        attempts = list(
            WritebackAttempt.objects.for_partner(partner)
            .filter(outbox=outbox)
            .order_by("started_at", "id")
        )
        for a in attempts:
            entries.append(_attempt_entry(a))
        current_tried = any(a.version == outbox.version for a in attempts)
        if outbox.state == WritebackOutbox.State.PENDING and not current_tried:
            when = outbox.next_attempt_at or outbox.updated_at
            entries.append(
                TimelineEntry(
                    at=outbox.updated_at,
                    kind=Kind.WRITEBACK,
                    title="Waiting to update Autotask",
                    detail=(
                        f"{_wanted(outbox.desired_paid_date)}; next try "
                        f"{timezone.localtime(when):%Y-%m-%d %H:%M}."
                    ),
                )
            )
        elif outbox.state == WritebackOutbox.State.CANCELLED:
            entries.append(
                TimelineEntry(
                    at=outbox.updated_at,
                    kind=Kind.WRITEBACK,
                    title="Update of Autotask cancelled",
                    detail="Autotask will not be changed for this invoice.",
                )
            )

    # --- reconciliation drift ----------------------------------------------------------------
    for d in ReconciliationDrift.objects.for_partner(partner).filter(invoice=invoice):
        values = (
            ""
            if d.reason == ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT
            else f"Autotask shows {d.autotask_value or 'no paid date'}; "
            f"our records say {d.ledger_value or 'no paid date'}."
        )
        entries.append(
            TimelineEntry(
                at=d.created_at,
                kind=Kind.DRIFT,
                title=DRIFT_TITLES.get(d.reason, d.get_reason_display()),
                detail=" ".join(filter(None, [values, d.detail])),
                run_id=d.run_id,
                link=_run_link(d.run_id),
            )
        )
        if d.resolved_at:
            entries.append(
                TimelineEntry(
                    at=d.resolved_at,
                    kind=Kind.DRIFT,
                    title=(
                        "Resolved: payments moved to the replacement invoice"
                        if d.reason == ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT
                        else "Autotask agrees with our records again"
                    ),
                    detail="The difference above is resolved.",
                    run_id=d.run_id,
                )
            )

    # Stable: entries of the same moment keep the order they were added in.
    entries.sort(key=lambda e: e.at)
    return entries


def _wanted(paid_date) -> str:
    if paid_date is None:
        return "Clear the paid date in Autotask"
    return f"Mark paid in Autotask on {paid_date:%Y-%m-%d}"


ATTEMPT_TITLES = {
    WritebackAttempt.Outcome.SENDING: "Updating Autotask",
    WritebackAttempt.Outcome.RETRY: "Autotask update will be retried",
    WritebackAttempt.Outcome.PARKED: "Autotask update needs attention",
    WritebackAttempt.Outcome.FAILED: "Autotask update failed",
    WritebackAttempt.Outcome.MISMATCH: "Autotask update accepted but not applied",
}


def _attempt_entry(a: WritebackAttempt) -> TimelineEntry:
    if a.outcome == WritebackAttempt.Outcome.SENT:
        title = (
            f"Marked paid in Autotask on {a.paid_date:%Y-%m-%d}"
            if a.paid_date
            else "Paid date cleared in Autotask"
        )
        answer = "Autotask accepted it."
    else:
        title = ATTEMPT_TITLES.get(a.outcome, "Autotask update")
        if a.outcome == WritebackAttempt.Outcome.SENDING:
            answer = "No answer from Autotask yet."
        elif a.outcome == WritebackAttempt.Outcome.MISMATCH:  # the error is a whole sentence
            answer = a.error or "Autotask accepted it but shows another paid date."
        else:
            answer = f"Autotask answered: {a.error or a.error_kind or 'an error'}."
        if a.retry_in_seconds:
            answer += f" Next try in {max(1, round(a.retry_in_seconds))} s."
    return TimelineEntry(
        at=a.started_at,
        kind=Kind.WRITEBACK,
        title=title,
        detail=f"{_wanted(a.paid_date)} (update {a.version}). {answer}",
    )


__all__ = ["KINDS", "TimelineEntry", "invoice_timeline"]
