"""The reconciliation rule: what an Autotask read of an invoice may change here (issue 16).

For an invoice from Autotask, its state here is derived from two sources: Autotask's latest read
and our own ledger (payments here, and the write-back outbox that carries their paidDate to
Autotask). `Invoice.paid_in_autotask_on` means "paid in Autotask by someone other than us";
payments here count through `paid_here`. Per read of an invoice that exists here, with W the
invoice's outbox row, X the paidDate we last wrote (`W.autotask_paid_date`) and R the read's:

1. A write-back we have not finished (W pending, sending, parked or failed) wins:
   `paid_in_autotask_on` keeps its value here whatever R is, since the read may show the very
   value the write-back is about to change (a deleted payment's paidDate, before the clearing
   PATCH got through a Retry-After).
2. Settled (W done or cancelled) and R agrees with the ledger (R is X or the desired paidDate,
   or both are none): R is our own paidDate, not Autotask's; `paid_in_autotask_on` is none and
   open drift of the invoice is resolved.
3. Settled and R contradicts it: drift, recorded (`ReconciliationDrift`, one open row per invoice
   and reason, with both values) and logged, never adopted — we wrote X and Autotask now shows
   none (`paid_date_cleared_in_autotask`) or another date (`paid_date_changed_in_autotask`), or
   we cleared it and Autotask shows a date we once wrote ourselves (`paid_date_not_cleared`: the
   null did not clear, or it was put back). A date we never wrote, after we cleared ours, is
   Autotask paying it itself: adopted.
4. No write-back ever: R is adopted both ways (paid in Autotask → paid here; cleared in
   Autotask → open here again, unless payments here cover it). Voids are always adopted (we
   never write them), and new invoices are taken as read.

5. Void and re-issue (Autotask never edits a posted invoice: it voids it and issues a new one
   with a new id and number). A void is adopted; if payments here were applied to the invoice,
   an open drift row `voided_after_payment` asks the partner (or ops) to move them to the
   replacement, proposed as the same company's oldest later invoice that is open
   (`replacement_propose`, also after each successful sync: the replacement may arrive in a
   later page or run). Moving them is one audited action (`ledger.payments_move`); the
   write-back then follows the new invoice. A write-back not yet sent for the voided invoice is
   cancelled: a voided invoice's paidDate is never written. So a read of a voided invoice
   records no paidDate drift (Autotask may clear or change a voided invoice's paidDate; only
   the void matters) and resolves any it had: the drift report shows it once, as voided.

Drift is about the latest read: a later read that no longer contradicts the ledger (it agrees,
or it shows a date Autotask set itself) resolves the invoice's open paidDate drift. So a read
taken just before one of our write-backs settled, and reconciled just after, opens a drift row
that the next read closes (the daily run re-reads every unpaid and recently paid invoice).

Where it runs, and why here: the rule needs the ledger, which is payments', one layer above the
sync, and the sync must not import payments. So the rule lives with the ledger, and the sync
asks it through the one registry it already has for upward work (`sync/hooks.py`:
`register_invoice_reconciler`, called from `PaymentsConfig.ready()`). The engine hands every
invoice page's rows to `reconcile_invoice_rows` inside the page's transaction, before the upsert;
the rows come back with `paid_in_autotask_on` as it may be written. The invoice rows are locked
first (`FOR UPDATE`, the lock the upsert takes anyway; payments lock the invoice before its
outbox row), so a payment or write-back result cannot change the ledger between this decision
and the write. The upsert applies these lifecycle fields even to rows it otherwise holds
(archived here, customer archived here, paid), so hidden invoices keep their paid/voided state.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from invoices.models import Invoice

from ..models import ReconciliationDrift, WritebackAttempt, WritebackOutbox

log = logging.getLogger(__name__)

State = WritebackOutbox.State
Reason = ReconciliationDrift.Reason
UNFINISHED = frozenset({State.PENDING, State.SENDING, State.PARKED, State.FAILED})
FIELD = "paid_in_autotask_on"
# Drift about the paidDate: a read that agrees with the ledger again resolves these (a void
# after payment waits for the partner's decision, `ledger.payments_move`).
PAID_DATE_REASONS = (
    Reason.PAID_DATE_CLEARED,
    Reason.PAID_DATE_CHANGED,
    Reason.PAID_DATE_NOT_CLEARED,
)


def _text(value: date | None) -> str:
    return value.isoformat() if value else ""


def reconcile_invoice_rows(*, partner, rows: list[dict], run=None, now=None) -> list[dict]:
    """Apply the rule to one page of invoice rows read from Autotask (dicts of synced values
    keyed by `autotask_id`; see the module docstring). Must run in the page's transaction.
    Returns the rows, `paid_in_autotask_on` set to what may be written."""
    now = now or timezone.now()
    ids = [row["autotask_id"] for row in rows]
    local = {
        r["autotask_id"]: r
        for r in Invoice.objects.for_partner(partner)
        .select_for_update(of=("self",))
        .filter(autotask_id__in=ids)
        .order_by("id")
        .values(
            "id",
            "autotask_id",
            FIELD,
            "writeback__state",
            "writeback__autotask_paid_date",
            "writeback__desired_paid_date",
            "voided",
            "paid_here",
            "customer_id",
        )
    }
    _voids_after_payment(partner, rows, local, run=run, now=now)
    settled_ok: list[int] = []  # invoices whose read agrees with the ledger
    # ... and shows what we want Autotask to have: only this resolves "not applied" drift (a
    # write-back that settled on what Autotask kept, writeback.py, agrees with `wrote` only).
    applied: list[int] = []
    suspects: list[tuple[dict, dict]] = []  # (row, local) settled-cleared, read shows a date
    drifts: list[tuple[dict, dict, str]] = []
    for row in rows:
        mine = local.get(row["autotask_id"])
        if mine is None or mine["writeback__state"] is None:
            continue  # new here, or never written by us: Autotask's read is adopted (rule 4)
        read = row[FIELD]
        if mine["writeback__state"] in UNFINISHED:
            row[FIELD] = mine[FIELD]  # rule 1: our write-back wins
            continue
        wrote, desired = mine["writeback__autotask_paid_date"], mine["writeback__desired_paid_date"]
        if (read is None and (wrote is None or desired is None)) or (
            read is not None and read in (wrote, desired)
        ):
            row[FIELD] = None  # rule 2: our own paidDate (or none), not Autotask's
            settled_ok.append(mine["id"])
            if read == desired:
                applied.append(mine["id"])
        elif wrote is not None:
            reason = Reason.PAID_DATE_CLEARED if read is None else Reason.PAID_DATE_CHANGED
            drifts.append((row, mine, reason))
        else:
            suspects.append((row, mine))
    if suspects:
        ours = set(
            WritebackAttempt.objects.for_partner(partner)
            .filter(
                outbox__invoice_id__in=[mine["id"] for _, mine in suspects],
                outcome=WritebackAttempt.Outcome.SENT,
                paid_date__isnull=False,
            )
            .values_list("outbox__invoice_id", "paid_date")
        )
        for row, mine in suspects:
            if (mine["id"], row[FIELD]) in ours:
                drifts.append((row, mine, Reason.PAID_DATE_NOT_CLEARED))
            else:
                # Paid in Autotask itself after we cleared ours (rule 3, last sentence): the
                # read no longer contradicts our ledger, so paidDate drift of it is over.
                settled_ok.append(mine["id"])
    for row, mine, reason in drifts:
        if not row.get("voided"):  # a void supersedes the paidDate (voided after payment)
            _record_drift(partner, row, mine, reason, run=run, now=now)
        row[FIELD] = mine[FIELD]  # never adopted
    # A voided invoice's paidDate is no longer ours to write (its write-backs are cancelled):
    # paidDate drift of it is over, whatever Autotask shows (e.g. cleared after the void).
    voided = [
        local[r["autotask_id"]]["id"] for r in rows if r.get("voided") and r["autotask_id"] in local
    ]
    if settled_ok or voided:
        ReconciliationDrift.objects.for_partner(partner).filter(
            Q(invoice_id__in=[*settled_ok, *voided], reason__in=PAID_DATE_REASONS)
            | Q(invoice_id__in=[*applied, *voided], reason=Reason.WRITEBACK_NOT_APPLIED),
            resolved_at__isnull=True,
        ).update(resolved_at=now)
    return rows


def _record_drift(partner, row: dict, mine: dict, reason: str, *, run, now) -> None:
    read, wrote = row[FIELD], mine["writeback__autotask_paid_date"]
    detail = (
        f"Autotask invoice {row['autotask_id']}: paidDate {_text(read) or 'none'} in Autotask, "
        f"{_text(wrote) or 'none'} last written by us; not adopted."
    )
    drift_record(
        partner,
        invoice_id=mine["id"],
        reason=reason,
        autotask_value=read,
        ledger_value=wrote,
        detail=detail,
        run=run,
        now=now,
    )


def drift_record(
    partner,
    *,
    invoice_id: int,
    reason: str,
    autotask_value: date | None,
    ledger_value: date | None,
    detail: str,
    run=None,
    now=None,
) -> None:
    """Record a paidDate drift of one invoice: refresh its open row of this reason (values,
    detail, last seen), or open one (one open row per invoice and reason). Used by the rule above
    and by the write-back relay's read-back (`writeback_not_applied`). The caller holds the
    invoice's row lock."""
    now = now or timezone.now()
    log.warning("reconciliation drift, partner %s: %s (%s)", partner.pk, detail, reason)
    updated = (
        ReconciliationDrift.objects.for_partner(partner)
        .filter(Q(invoice_id=invoice_id, reason=reason, resolved_at__isnull=True))
        .update(
            autotask_value=_text(autotask_value),
            ledger_value=_text(ledger_value),
            detail=detail,
            last_seen_at=now,
        )
    )
    if not updated:
        ReconciliationDrift.objects.create(
            partner=partner,
            invoice_id=invoice_id,
            reason=reason,
            detail=detail,
            autotask_value=_text(autotask_value),
            ledger_value=_text(ledger_value),
            run_id=getattr(run, "pk", None),
            last_seen_at=now,
        )


# --- void and re-issue (rule 5) ---------------------------------------------------------------


def _voids_after_payment(partner, rows: list[dict], local: dict, *, run, now) -> None:
    """Rows read voided whose invoice here is not yet voided: cancel a write-back not yet sent
    and, if payments here were applied to it, open a `voided_after_payment` drift row."""
    newly_voided = [
        (row, local[row["autotask_id"]])
        for row in rows
        if row.get("voided")
        and row["autotask_id"] in local
        and not local[row["autotask_id"]]["voided"]
    ]
    if not newly_voided:
        return
    ids = [mine["id"] for _, mine in newly_voided]
    WritebackOutbox.objects.for_partner(partner).filter(
        invoice_id__in=ids, state__in=(State.PENDING, State.PARKED, State.FAILED)
    ).update(
        state=State.CANCELLED,
        last_error_kind="voided",
        last_error="Voided in Autotask: its paidDate is no longer written.",
        updated_at=now,
    )
    for row, mine in newly_voided:
        if mine["paid_here"] <= 0:
            continue
        detail = (
            f"Voided in Autotask while {mine['paid_here']} of payments here were applied to it; "
            "move them to the invoice Autotask issued in its place."
        )
        log.warning("invoice %s of partner %s voided after payment", mine["id"], partner.pk)
        exists = (
            ReconciliationDrift.objects.for_partner(partner)
            .filter(invoice_id=mine["id"], reason=Reason.VOIDED_AFTER_PAYMENT, resolved_at=None)
            .update(last_seen_at=now)
        )
        if not exists:
            ReconciliationDrift.objects.create(
                partner=partner,
                invoice_id=mine["id"],
                reason=Reason.VOIDED_AFTER_PAYMENT,
                detail=detail,
                autotask_value="voided",
                ledger_value=str(mine["paid_here"]),
                run_id=getattr(run, "pk", None),
                replacement=replacement_propose(
                    partner, mine["id"], mine["customer_id"], row.get("voided_at")
                ),
                last_seen_at=now,
            )


VOID_CLOCK_SKEW = timedelta(minutes=5)


def replacement_propose(
    partner, invoice_id: int, customer_id: int | None, voided_at: datetime | None = None
) -> Invoice | None:
    """The invoice Autotask most likely issued in place of the voided one: the same company's
    oldest invoice from Autotask created after the void (`voidedDate`, less a few minutes of
    clock skew; when it is unknown, after the voided invoice itself: Autotask ids only grow),
    not voided, not paid in Autotask, not archived. None when there is none (yet)."""
    voided = Invoice.objects.for_partner(partner).filter(pk=invoice_id).first()
    if voided is None or customer_id is None or voided.autotask_id is None:
        return None
    voided_at = voided_at or voided.voided_at
    candidates = Invoice.objects.for_partner(partner).filter(
        customer_id=customer_id,
        source=voided.source,
        autotask_id__gt=voided.autotask_id,
        voided=False,
        paid_in_autotask_on__isnull=True,
        archived_at__isnull=True,
    )
    if voided_at is not None:
        candidates = candidates.filter(autotask_created_at__gte=voided_at - VOID_CLOCK_SKEW)
    return candidates.order_by("autotask_id").first()


def replacements_fill(*, partner) -> int:
    """After a successful sync: propose a replacement for open `voided_after_payment` rows that
    have none yet (the re-issued invoice may arrive after the void) or whose proposal can no
    longer take payments. Returns how many got one."""
    filled = 0
    # No proposal yet, or one that can no longer take the payments (voided, paid in Autotask
    # or archived since): propose again.
    stale = (
        Q(replacement__isnull=True)
        | Q(replacement__voided=True)
        | Q(replacement__paid_in_autotask_on__isnull=False)
        | Q(replacement__archived_at__isnull=False)
    )
    open_rows = ReconciliationDrift.objects.for_partner(partner).filter(
        stale, reason=Reason.VOIDED_AFTER_PAYMENT, resolved_at__isnull=True
    )
    # Ids only: this runs after every successful sync of every partner, and almost always
    # finds nothing (building two models' column lists cost more than the query).
    rows = open_rows.values_list("id", "invoice_id", "invoice__customer_id", "replacement_id")
    for drift_id, invoice_id, customer_id, replacement_id in rows[:500]:
        found = replacement_propose(partner, invoice_id, customer_id)
        if found is not None or replacement_id is not None:
            ReconciliationDrift.objects.for_partner(partner).filter(pk=drift_id).update(
                replacement=found
            )
            filled += found is not None
    return filled
