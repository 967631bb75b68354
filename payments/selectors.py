"""Reads of the payments ledger for the dashboard, the API and ops.

The drift report (issue 16, item 3): every invoice whose state here and in Autotask differ, with
its reason and the one action that resolves it. Today that is
- open `ReconciliationDrift` rows (an Autotask read contradicted our ledger after our write-back
  settled, or an invoice was voided in Autotask after payments here: payments/services/
  reconcile.py), and
- write-backs we have not finished: parked or failed ("write-back failed", needs someone) and
  pending or sending ("write-back pending", resolves itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .models import ReconciliationDrift, WritebackOutbox

State = WritebackOutbox.State
WRITEBACK_FAILED = "writeback_failed"
WRITEBACK_PENDING = "writeback_pending"
FAILED_STATES = (State.PARKED, State.FAILED)
PENDING_STATES = (State.PENDING, State.SENDING)

# Every reason the report gives, code → label (the API's `reason` values, the metric's labels).
REASONS: dict[str, str] = {
    **dict(ReconciliationDrift.Reason.choices),
    WRITEBACK_FAILED: "Write-back to Autotask failed",
    WRITEBACK_PENDING: "Write-back to Autotask pending",
}

_ACTIONS = {
    ReconciliationDrift.Reason.PAID_DATE_CLEARED: (
        "Check the invoice in Autotask: payments here cover it, so set its paidDate back "
        "to {ledger}."
    ),
    ReconciliationDrift.Reason.PAID_DATE_CHANGED: (
        "Check the invoice in Autotask: set its paidDate back to {ledger}, the date we wrote."
    ),
    ReconciliationDrift.Reason.PAID_DATE_NOT_CLEARED: (
        "Check the invoice in Autotask: clear its paidDate, no payment here covers it any more."
    ),
    ReconciliationDrift.Reason.WRITEBACK_NOT_APPLIED: (
        "Autotask accepted our update but kept its own paidDate: set it to {ledger} in "
        "Autotask by hand (none: clear it)."
    ),
    ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT: (
        "Move its payments to invoice {replacement}, which Autotask issued in its place."
    ),
}
VOIDED_NO_REPLACEMENT_ACTION = (
    "Re-issue the invoice in Autotask (or tell us which invoice replaces it): its payments "
    "will then be moved to the new invoice in one step."
)
NOT_CONNECTED_ACTION = (
    "Reconnect Autotask on the Integrations page, then ask support to retry the write-back "
    "(Payments → Write-back outbox)."
)
FAILED_ACTION = (
    "Ask support to retry the write-back from Payments → Write-back outbox once the error "
    "below is fixed in Autotask."
)
PENDING_ACTION = "Nothing to do: the write-back is queued and will be sent to Autotask shortly."


@dataclass(frozen=True)
class DriftEntry:
    invoice: int
    invoice_number: str
    reason: str
    reason_label: str
    detail: str
    action: str
    since: datetime
    # Voided after payment: the proposed replacement (moving the payments there resolves it).
    drift_id: int | None = None
    replacement: int | None = None
    replacement_number: str = ""


def _drift_entries(partner) -> list[DriftEntry]:
    rows = (
        ReconciliationDrift.objects.for_partner(partner)
        .filter(resolved_at__isnull=True)
        .select_related("invoice", "replacement")
        .order_by("-created_at", "-id")
    )
    return [
        DriftEntry(
            invoice=row.invoice_id,
            invoice_number=row.invoice.number,
            reason=row.reason,
            reason_label=REASONS.get(row.reason, row.reason),
            detail=row.detail,
            action=_action(row),
            since=row.created_at,
            drift_id=row.pk,
            replacement=row.replacement_id,
            replacement_number=row.replacement.number if row.replacement_id else "",
        )
        for row in rows
    ]


def _action(row: ReconciliationDrift) -> str:
    if row.reason == ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT and not row.replacement_id:
        return VOIDED_NO_REPLACEMENT_ACTION
    template = _ACTIONS.get(row.reason, "Check the invoice in Autotask.")
    return template.format(
        ledger=row.ledger_value or "none",
        replacement=row.replacement.number if row.replacement_id else "",
    )


def _writeback_detail(outbox: WritebackOutbox) -> str:
    paid = outbox.desired_paid_date
    target = f"paidDate {paid.isoformat()}" if paid else "paidDate cleared"
    text = f"{target} not yet in Autotask ({outbox.get_state_display().lower()})"
    if outbox.last_error:
        text += f": {outbox.last_error}"
    elif outbox.last_error_kind:
        text += f": {outbox.last_error_kind}"
    return text[:500]


def _writeback_entries(partner, *, pending: bool) -> list[DriftEntry]:
    states = FAILED_STATES + (PENDING_STATES if pending else ())
    rows = (
        WritebackOutbox.objects.for_partner(partner)
        .filter(state__in=states)
        .select_related("invoice")
        .order_by("-updated_at", "-id")
    )
    entries = []
    for row in rows:
        if row.state in FAILED_STATES:
            reason = WRITEBACK_FAILED
            action = (
                NOT_CONNECTED_ACTION if row.last_error_kind == "not_connected" else FAILED_ACTION
            )
        else:
            reason, action = WRITEBACK_PENDING, PENDING_ACTION
        entries.append(
            DriftEntry(
                invoice=row.invoice_id,
                invoice_number=row.invoice.number,
                reason=reason,
                reason_label=REASONS[reason],
                detail=_writeback_detail(row),
                action=action,
                since=row.updated_at,
            )
        )
    return entries


def drift_report(*, partner, include_pending: bool = True) -> list[DriftEntry]:
    """The partner's drift report, newest first (`since`): open drift rows, write-backs parked
    or failed and, with `include_pending`, write-backs pending or sending."""
    entries = _drift_entries(partner) + _writeback_entries(partner, pending=include_pending)
    entries.sort(key=lambda e: (e.since, e.invoice), reverse=True)
    return entries


def voided_after_payment(*, partner, invoice) -> ReconciliationDrift | None:
    """The invoice's open `voided_after_payment` drift row (with its proposed replacement), or
    None: the invoice page offers the move from it."""
    if not invoice.voided:
        return None
    return (
        ReconciliationDrift.objects.for_partner(partner)
        .filter(
            invoice=invoice,
            reason=ReconciliationDrift.Reason.VOIDED_AFTER_PAYMENT,
            resolved_at__isnull=True,
        )
        .select_related("replacement")
        .first()
    )


# Orders of the payments list, dashboard and API (`?sort=` / `?ordering=`; config/listing.py).
PAYMENT_SORTS = {
    "received_at": ("received_at",),
    "invoice": ("invoice__number",),
    "amount": ("amount",),
    "method": ("method",),
    "status": ("status",),
}
PAYMENT_DEFAULT_SORT = "-received_at"
