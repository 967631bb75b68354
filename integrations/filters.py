"""A partner's connect filters (R1): validation, description, and Autotask query conditions.

An unknown key or a bad value is an error with a message per key, never silently ignored.
Stored on AutotaskConnection.filters as validated JSON (`validate_filters`):
  company_types: [int]          Companies.companyType in …
  include_company_ids: [int]    only these companies (and their invoices)
  exclude_company_ids: [int]    never these companies (nor their invoices)
  active_only: bool             Companies.isActive = true
  invoices_from: "YYYY-MM-DD"   Invoices.invoiceDateTime ≥ that date
  min_total: "123.45"           Invoices.invoiceTotal ≥ that amount
  payment_terms: [int]          Invoices.paymentTerm in …
  include_voided: bool          voided invoices too (off by default)
No filters = everything (R1).
The same conditions serve the connect preview (integrations/services.py) and the sync
(sync/engine.py), so the preview counts what a sync brings.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

from .autotask.query import Condition, Q

# Autotask's standard companyType picklist (Companies entityInformation/fields). A database may
# add values: the connect check validates against the live picklist when it can.
DEFAULT_COMPANY_TYPES = {
    1: "Customer",
    2: "Lead",
    3: "Prospect",
    4: "Dead",
    6: "Cancellation",
    7: "Vendor",
    8: "Partner",
}
MAX_IDS = 400  # one Autotask `in` condition (ids are batched ≤ 400, API.md §3.2)

# Every filter, in the order the Connect form shows them.
FILTER_KEYS = (
    "company_types",
    "include_company_ids",
    "exclude_company_ids",
    "active_only",
    "invoices_from",
    "min_total",
    "payment_terms",
    "include_voided",
)
KEYS = frozenset(FILTER_KEYS)


def _int_list(key, value, errors, *, allowed=None):
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        errors[key] = "Must be a list of whole numbers."
        return None
    out = []
    for item in value:
        try:
            if isinstance(item, bool):
                raise ValueError
            number = int(str(item).strip())
        except (TypeError, ValueError):
            errors[key] = f"{item!r} is not a whole number."
            return None
        if number <= 0:
            errors[key] = f"{number} is not a valid Autotask id."
            return None
        if allowed is not None and number not in allowed:
            errors[key] = f"{number} is not one of: " + ", ".join(
                f"{k} ({v})" for k, v in sorted(allowed.items())
            )
            return None
        out.append(number)
    if len(set(out)) > MAX_IDS:
        errors[key] = f"At most {MAX_IDS} values."
        return None
    return sorted(set(out))


def _bool(key, value, errors):
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "on", "off", "1", "0"}:
        return value.lower() in {"true", "on", "1"}
    errors[key] = "Must be true or false."
    return None


def validate_filters(data, *, company_types: dict[int, str] | None = None) -> dict:
    """The cleaned filters (only the ones set), or ValidationError with a message per key.
    `company_types`: the database's companyType picklist to check against (None: not known
    yet, any id is accepted)."""
    if data in (None, ""):
        return {}
    if not isinstance(data, dict):
        raise ValidationError({"filters": "Filters must be an object."})
    errors: dict[str, str] = {}
    unknown = sorted(set(data) - KEYS)
    for key in unknown:
        errors[key] = "Unknown filter. Known filters: " + ", ".join(sorted(KEYS)) + "."
    cleaned: dict = {}
    # Without the database's picklist (a first, offline check) any Autotask id passes: a
    # tenant may have its own types; the check against its live picklist follows.
    types = _int_list("company_types", data.get("company_types"), errors, allowed=company_types)
    include = _int_list("include_company_ids", data.get("include_company_ids"), errors)
    exclude = _int_list("exclude_company_ids", data.get("exclude_company_ids"), errors)
    terms = _int_list("payment_terms", data.get("payment_terms"), errors)
    if include and exclude and set(include) & set(exclude):
        errors["exclude_company_ids"] = "A company cannot be both included and excluded."
    for key, value in [
        ("company_types", types),
        ("include_company_ids", include),
        ("exclude_company_ids", exclude),
        ("payment_terms", terms),
    ]:
        if value:
            cleaned[key] = value
    for key in ("active_only", "include_voided"):
        value = _bool(key, data.get(key), errors)
        if value:
            cleaned[key] = True
    raw_date = data.get("invoices_from")
    if raw_date not in (None, ""):
        try:
            parsed = date.fromisoformat(str(raw_date))
        except ValueError:
            errors["invoices_from"] = "Must be a date as YYYY-MM-DD."
        else:
            if parsed.year < 2000 or parsed > date.today():
                errors["invoices_from"] = "Must be a date between 2000-01-01 and today."
            else:
                cleaned["invoices_from"] = parsed.isoformat()
    raw_total = data.get("min_total")
    if raw_total not in (None, ""):
        try:
            if isinstance(raw_total, bool):
                raise InvalidOperation
            amount = Decimal(str(raw_total))
            if not amount.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            errors["min_total"] = "Must be an amount such as 100 or 99.50."
        else:
            if amount < 0 or amount > Decimal("1000000000"):
                errors["min_total"] = "Must be between 0 and 1,000,000,000."
            elif amount > 0:
                cleaned["min_total"] = str(amount.quantize(Decimal("0.01")))
    if errors:
        raise ValidationError(errors)
    return cleaned


def describe_filters(filters: dict, company_types: dict[int, str] | None = None) -> list[str]:
    """Plain-language lines for the dashboard, each one true: without filters a single line
    says everything is synced (and what happens to voided invoices)."""
    filters = filters or {}
    voided = filters.get("include_voided")
    if not any(filters.get(key) for key in FILTER_KEYS if key != "include_voided"):
        return [
            "No filters: every customer and invoice is synced, voided invoices included."
            if voided
            else "No filters: every customer and invoice is synced, except voided invoices."
        ]
    types = company_types or DEFAULT_COMPANY_TYPES
    lines = []
    if filters.get("company_types"):
        names = [types.get(t, str(t)) for t in filters["company_types"]]
        lines.append("Company types: " + ", ".join(names))
    if filters.get("include_company_ids"):
        lines.append(f"Only companies {', '.join(map(str, filters['include_company_ids']))}")
    if filters.get("exclude_company_ids"):
        lines.append(f"Except companies {', '.join(map(str, filters['exclude_company_ids']))}")
    if filters.get("active_only"):
        lines.append("Active companies only")
    if filters.get("invoices_from"):
        lines.append(f"Invoices dated on or after {filters['invoices_from']}")
    if filters.get("min_total"):
        lines.append(f"Invoices of at least {filters['min_total']}")
    if filters.get("payment_terms"):
        lines.append(f"Payment terms {', '.join(map(str, filters['payment_terms']))}")
    lines.append("Voided invoices included" if voided else "Voided invoices left out")
    return lines


# --- as Autotask query conditions -----------------------------------------------------------


def company_conditions(filters: dict) -> list[Condition]:
    conds: list[Condition] = []
    if filters.get("company_types"):
        conds.append(Q.in_("companyType", filters["company_types"]))
    if filters.get("include_company_ids"):
        conds.append(Q.in_("id", filters["include_company_ids"]))
    if filters.get("exclude_company_ids"):
        conds.append(Q.not_in("id", filters["exclude_company_ids"]))
    if filters.get("active_only"):
        conds.append(Q.eq("isActive", True))
    return conds


def invoice_conditions(filters: dict) -> list[Condition]:
    conds: list[Condition] = []
    if filters.get("include_company_ids"):
        conds.append(Q.in_("companyID", filters["include_company_ids"]))
    if filters.get("exclude_company_ids"):
        conds.append(Q.not_in("companyID", filters["exclude_company_ids"]))
    if filters.get("invoices_from"):
        start = date.fromisoformat(filters["invoices_from"])
        conds.append(
            Q.gte("invoiceDateTime", datetime(start.year, start.month, start.day, tzinfo=UTC))
        )
    if filters.get("min_total") not in (None, ""):
        conds.append(Q.gte("invoiceTotal", Decimal(str(filters["min_total"]))))
    if filters.get("payment_terms"):
        conds.append(Q.in_("paymentTerm", filters["payment_terms"]))
    if not filters.get("include_voided"):
        conds.append(Q.eq("isVoided", False))
    return conds


def company_passes(filters: dict, company) -> bool:
    """The same company filters, applied to a company fetched by id (hourly sync)."""
    if filters.get("company_types") and company.company_type not in filters["company_types"]:
        return False
    if filters.get("include_company_ids") and company.id not in filters["include_company_ids"]:
        return False
    if company.id in (filters.get("exclude_company_ids") or []):
        return False
    return not (filters.get("active_only") and not company.is_active)
