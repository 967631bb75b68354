"""Writes to invoices: mapping Autotask invoices to our rows, and the identifier choice."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection, transaction
from django.db.models import Case, CharField, F, When
from django.db.models.functions import Cast
from django.utils import timezone

from config.api import DomainError
from customers.models import Customer
from integrations.autotask.records import Invoice as AutotaskInvoice
from integrations.models import AutotaskConnection

from .models import Invoice, OpenBalance, balances_kept

CENT = Decimal("0.01")

# Fields an Autotask sync owns (R5: amount and due date of unpaid invoices; R4: paidDate;
# voids; the number shown). Never: paid_here, archived_at, anything created here.
SYNCED_FIELDS = [
    "autotask_invoice_number",
    "number",
    "invoice_date",
    "due_date",
    "total",
    "tax",
    "paid_in_autotask_on",
    "voided",
    "voided_at",
    "payment_term_id",
    "autotask_created_at",
    "currency",  # the customer's (Autotask invoices carry none: issue 16), set by the engine
]


# The lifecycle an invoice keeps following when it is otherwise held (archived here, its
# customer archived here, paid): applied as reconciled (payments/services/reconcile.py).
LIFECYCLE_FIELDS = ("paid_in_autotask_on", "voided", "voided_at")


def money(value: Decimal | None) -> Decimal:
    """Autotask sends doubles with up to 4 decimals (e.g. 52.7775); we keep cents, half up."""
    return (value or Decimal(0)).quantize(CENT, rounding=ROUND_HALF_UP)


def shown_number(*, autotask_id: int, invoice_number: str | None, identifier: str) -> str:
    """The number partners see and search (R1): Autotask's invoiceNumber, or its id. An empty
    invoiceNumber falls back to the id either way (Autotask itself shows the id then)."""
    if identifier == AutotaskConnection.Identifier.AUTOTASK_ID:
        return str(autotask_id)
    return (invoice_number or "").strip() or str(autotask_id)


def invoice_values_from_autotask(
    record: AutotaskInvoice,
    *,
    identifier: str,
    payment_term_days: dict[int, int],
    currency: str,
) -> dict:
    """Our columns from an Autotask invoice. ``currency`` is its customer's (Autotask invoices
    have no currency field: invoiceTotal is in the company's currency, API.md §10); the caller
    decides it and never passes a guess."""
    check_currency(record.id, currency)
    values = autotask_invoice_values(
        record, identifier=identifier, payment_term_days=payment_term_days
    )
    values["currency"] = currency
    return values


def check_currency(autotask_id: int, currency: str) -> None:
    if len(currency or "") != 3:
        raise ValueError(f"invoice {autotask_id}: no currency ({currency!r})")


def autotask_invoice_values(
    record: AutotaskInvoice, *, identifier: str, payment_term_days: dict[int, int]
) -> dict:
    """`invoice_values_from_autotask` but the currency (the customer's, which the caller adds
    with `check_currency`): the sync computes this part off its writer thread."""
    if record.invoice_date_time is None:
        raise ValueError("invoiceDateTime is missing")
    # invoiceDateTime is a date in Autotask's UI: take its date part, no time-zone shift.
    invoice_date = record.invoice_date_time.date()
    due_date = record.due_date
    if due_date is None:
        days = payment_term_days.get(record.payment_term or -1)
        due_date = invoice_date + timedelta(days=days) if days is not None else invoice_date
    return {
        "autotask_id": record.id,
        "company_id": record.company_id,
        "autotask_invoice_number": (record.invoice_number or "").strip()[:100],
        "number": shown_number(
            autotask_id=record.id, invoice_number=record.invoice_number, identifier=identifier
        )[:100],
        "invoice_date": invoice_date,
        "due_date": due_date,
        "total": money(record.invoice_total),
        "tax": money(record.total_tax_value),
        "paid_in_autotask_on": record.paid_date,
        "voided": bool(record.is_voided),
        "voided_at": record.voided_date if record.is_voided else None,
        "payment_term_id": record.payment_term,
        "autotask_created_at": record.create_date_time,
    }


def protect_invoice(obj: Invoice) -> str | None:
    """Paid invoices are not rewritten by later Autotask edits (issue: sync engine)."""
    if obj.paid_in_autotask_on is not None:
        return "already paid in Autotask"
    if obj.paid_here > 0 and obj.paid_here >= obj.total - obj.credits:
        return "paid here"
    return None


def invoices_relabel(*, partner, identifier: str) -> int:
    """Re-label existing Autotask invoices after the identifier choice changed (no sync)."""
    if identifier == AutotaskConnection.Identifier.AUTOTASK_ID:
        new_number = Cast(F("autotask_id"), output_field=CharField())
    else:
        new_number = Case(
            When(autotask_invoice_number="", then=Cast(F("autotask_id"), output_field=CharField())),
            default=F("autotask_invoice_number"),
        )
    return (
        Invoice.objects.for_partner(partner)
        .filter(source="autotask")
        .exclude(number=new_number)
        .update(number=new_number)
    )


__all__ = [
    "SYNCED_FIELDS",
    "autotask_invoice_values",
    "check_currency",
    "invoice_values_from_autotask",
    "invoices_relabel",
]


# --- archiving and invoices created here (R7, R9) ---------------------------------------------


def invoice_archive(*, partner, invoice_id: int, archived: bool = True) -> Invoice:
    """Archive (or unarchive) one of the partner's invoices, at once. Archived invoices are
    hidden from default lists, cannot be paid and are never touched by syncs. Idempotent."""
    qs = Invoice.objects.for_partner(partner).filter(pk=invoice_id)
    if not qs.exists():
        raise DomainError("No such invoice.", code="not_found", status_code=404)
    if archived:
        qs.filter(archived_at__isnull=True).update(archived_at=timezone.now())
    else:
        qs.filter(archived_at__isnull=False).update(archived_at=None)
    return qs.select_related("customer").get()


def invoice_create_local(
    *,
    partner,
    customer_id: int,
    number: str,
    invoice_date,
    total: Decimal,
    due_date=None,
    tax: Decimal = Decimal("0.00"),
    currency: str | None = None,
) -> Invoice:
    """An invoice created here: source "local", no Autotask id, never sent to Autotask (R7).
    Its currency is the customer's (`invoice_currency_for`)."""
    customer = Customer.objects.for_partner(partner).filter(pk=customer_id).first()
    if customer is None:
        raise DomainError("No such customer.", code="customer_not_found", status_code=400)
    if customer.archived_at is not None:
        raise DomainError("The customer is archived.", code="customer_archived", status_code=409)
    if total < 0 or tax < 0:
        raise DomainError("Amounts cannot be negative.", code="invalid_amount")
    currency = invoice_currency_for(partner=partner, customer=customer, currency=currency)
    return Invoice.objects.create(
        partner=partner,
        customer=customer,
        source="local",
        autotask_id=None,
        number=number.strip()[:100],
        invoice_date=invoice_date,
        due_date=due_date or invoice_date,
        total=money(total),
        tax=money(tax),
        currency=currency,
    )


def invoice_currency_for(*, partner, customer: Customer, currency: str | None) -> str:
    """The currency of an invoice created here for `customer` (issue 16: never USD by default).

    - A customer with a currency (every Autotask customer once its company was read) bills in
      it: no currency given → the customer's; another one → refused (`currency_mismatch`), as
      a payment in another currency would be refused.
    - A customer without one (created here, or its Autotask currency unknown): the currency
      given, else the internal currency of the partner's Autotask database when we know it,
      else refused (`currency_required`).
    """
    given = (currency or "").strip().upper()
    if given and (len(given) != 3 or not given.isascii() or not given.isalpha()):
        raise DomainError("Enter a three-letter currency code, like EUR.", code="invalid_currency")
    if customer.currency:
        if given and given != customer.currency:
            raise DomainError(
                f"{customer.name} is billed in {customer.currency}: an invoice in {given} "
                "cannot be created for this customer.",
                code="currency_mismatch",
                extra={"customer_currency": customer.currency},
            )
        return customer.currency
    if given:
        return given
    internal = (
        AutotaskConnection.objects.for_partner(partner)
        .values_list("internal_currency", flat=True)
        .first()
    )
    if internal:
        return internal
    raise DomainError(
        "This customer has no currency: enter the invoice's currency.", code="currency_required"
    )


# How many (partner, customer) pairs one folding statement takes (a bounded transaction).
FOLD_BATCH = 20_000
# The advisory lock folds take turns on: the two-key form, whose key space PostgreSQL keeps
# apart from the one-key locks of payments (webhook_events); "OBAL" in ASCII.
FOLD_LOCK = (0x4F42414C, 1)

_FOLD = """
WITH touched AS (
    SELECT DISTINCT partner_id, customer_id FROM {table} WHERE NOT folded LIMIT %s
), gone AS (
    DELETE FROM {table} AS b USING touched AS t
    WHERE b.partner_id = t.partner_id AND b.customer_id = t.customer_id
    RETURNING b.partner_id, b.customer_id, b.currency, b.amount, b.invoices
), written AS (
    INSERT INTO {table} (partner_id, customer_id, currency, amount, invoices, folded)
    SELECT partner_id, customer_id, currency, sum(amount), sum(invoices), true FROM gone
    GROUP BY partner_id, customer_id, currency HAVING sum(amount) <> 0 OR sum(invoices) <> 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM touched), (SELECT count(*) FROM written)
"""


def open_balances_fold(*, batch: int = FOLD_BATCH) -> int:
    """Fold the rows the invoice triggers appended (`OpenBalance`) into one per customer and
    currency, every partner at once, `batch` customers a statement; rows adding up to zero
    go. Returns the customers folded. Beat runs it every minute.

    Safe beside the writers: a write appends rows this statement's snapshot does not see
    (they stay for the next fold), and nothing here blocks an insert. Two folds at once take
    turns on an advisory lock. PostgreSQL only (the SQLite path has no triggers and
    no rows)."""
    if not balances_kept():
        return 0
    sql = _FOLD.format(table=OpenBalance._meta.db_table)
    folded = 0
    while True:
        with transaction.atomic(), connection.cursor() as cur:
            # One fold at a time: a second one would take its snapshot before the first's
            # folded rows commit and leave two folded rows for a customer (sums still right).
            # Its statement starts after the lock, so it sees them.
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", FOLD_LOCK)
            cur.execute(sql, [batch])
            touched, _written = cur.fetchone()
        folded += touched
        if touched < batch:
            return folded
