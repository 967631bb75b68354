"""A partner's connect filters (R1) as Autotask query conditions.

Stored on AutotaskConnection.filters as validated JSON (integrations/filters.py validates):
  company_types: [int]          Companies.companyType in …
  include_company_ids: [int]    only these companies (and their invoices)
  exclude_company_ids: [int]    never these companies (nor their invoices)
  active_only: bool             Companies.isActive = true
  invoices_from: "YYYY-MM-DD"   Invoices.invoiceDateTime ≥ that date
  min_total: "123.45"           Invoices.invoiceTotal ≥ that amount
  payment_terms: [int]          Invoices.paymentTerm in …
  include_voided: bool          voided invoices too (off by default)
No filters = everything (R1).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from integrations.autotask.query import Condition, Q


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
