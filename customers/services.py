"""Writes to customers. Sync code maps Autotask companies here; the dashboard and API create and
archive local ones."""

from __future__ import annotations

from django.utils import timezone

from config.api import DomainError
from integrations.autotask.records import Company

from .models import Customer

# Fields a sync owns and overwrites (unless the customer is archived here).
SYNCED_FIELDS = [
    "name",
    "number",
    "phone",
    "address1",
    "address2",
    "city",
    "state",
    "postal_code",
    "country_id",
    "company_type",
    "active",
]


def _clean(value: str | None, limit: int) -> str:
    return (value or "").strip()[:limit]


def customer_values_from_company(company: Company) -> dict:
    """Our columns from an Autotask company. Billing address first (billTo*), else the main one."""
    use_billing = bool(company.bill_to_address1)
    return {
        "autotask_id": company.id,
        "name": _clean(company.company_name, 255) or f"Autotask company {company.id}",
        "number": _clean(company.company_number, 100),
        "phone": _clean(company.phone, 50),
        "address1": _clean(company.bill_to_address1 if use_billing else company.address1, 255),
        "address2": _clean(company.bill_to_address2 if use_billing else company.address2, 255),
        "city": _clean(company.bill_to_city if use_billing else company.city, 100),
        "state": _clean(company.bill_to_state if use_billing else company.state, 100),
        "postal_code": _clean(company.bill_to_zip_code if use_billing else company.postal_code, 30),
        "country_id": (company.bill_to_country_id if use_billing else company.country_id),
        "company_type": company.company_type,
        "active": bool(company.is_active) if company.is_active is not None else True,
    }


# --- archiving and customers created here (R7, R9) --------------------------------------------


def customer_archive(*, partner, customer_id: int, archived: bool = True):
    """Archive (or unarchive) one of the partner's customers, at once. Its invoices are left as
    they are (archive them one by one). Idempotent."""
    qs = Customer.objects.for_partner(partner).filter(pk=customer_id)
    if not qs.exists():
        raise DomainError("No such customer.", code="not_found", status_code=404)
    if archived:
        qs.filter(archived_at__isnull=True).update(archived_at=timezone.now())
    else:
        qs.filter(archived_at__isnull=False).update(archived_at=None)
    return qs.get()


def customer_create_local(*, partner, name: str, **fields):
    """A customer created here: source "local", never sent to Autotask (R7)."""
    allowed = {"number", "email", "phone", "address1", "address2", "city", "state", "postal_code"}
    values = {k: (v or "").strip() for k, v in fields.items() if k in allowed}
    return Customer.objects.create(
        partner=partner, source="local", autotask_id=None, name=name.strip()[:255], **values
    )
