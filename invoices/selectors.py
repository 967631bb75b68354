from django.db.models import Q

from .models import Invoice, InvoiceStatus


def invoice_list(
    *,
    partner,
    search: str = "",
    status: str = "",
    customer_id=None,
    archived: str = "no",
    missing: bool = False,
):
    """The partner's invoices for lists: archived ones hidden unless asked for."""
    qs = Invoice.objects.for_partner(partner).select_related("customer")
    if archived == "only":
        qs = qs.filter(archived_at__isnull=False)
    elif archived != "all":
        qs = qs.filter(archived_at__isnull=True)
    if search:
        qs = qs.filter(Q(number__icontains=search) | Q(customer__name__icontains=search))
    if status in InvoiceStatus.values:
        qs = qs.filter(status=status)
    if customer_id:
        qs = qs.filter(customer_id=customer_id)
    if missing:
        qs = qs.filter(missing_in_autotask_since__isnull=False)
    return qs


def duplicate_numbers(partner) -> set[str]:
    """Shown numbers used by more than one invoice of the partner (flagged in lists)."""
    from django.db.models import Count

    return set(
        Invoice.objects.for_partner(partner)
        .values("number")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("number", flat=True)
    )
