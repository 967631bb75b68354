"""The open balances PostgreSQL keeps (invoices.models.OpenBalance) against the invoices they
stand for, added up the slow way."""

from django.db.models import Count, Sum

from invoices.models import Invoice, OpenBalance
from invoices.selectors import OPEN_STATES


def kept_balances(partner) -> dict:
    """{(customer id, currency): (amount, open invoices)} as the balances' rows add up."""
    rows = (
        OpenBalance.objects.filter(partner_id=partner.pk)
        .values("customer_id", "currency")
        .annotate(a=Sum("amount"), n=Sum("invoices"))
    )
    return {(r["customer_id"], r["currency"]): (r["a"], r["n"]) for r in rows if r["n"] or r["a"]}


def counted_balances(partner) -> dict:
    """The same, from the partner's open invoices that are not archived."""
    rows = (
        Invoice.objects.filter(partner=partner, archived_at__isnull=True, status__in=OPEN_STATES)
        .values("customer_id", "currency")
        .annotate(a=Sum("outstanding"), n=Count("id"))
    )
    return {(r["customer_id"], r["currency"]): (r["a"], r["n"]) for r in rows}


def balance_mismatches(partner) -> dict:
    """{(customer id, currency): (kept, counted)} wherever the two differ: {} when they agree."""
    kept, counted = kept_balances(partner), counted_balances(partner)
    return {
        key: (kept.get(key), counted.get(key))
        for key in kept.keys() | counted.keys()
        if kept.get(key) != counted.get(key)
    }
