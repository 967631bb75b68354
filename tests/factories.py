"""Factories for the test suite: one place that knows how to make a valid row of each model.
Fixtures in the conftest files (`make_partner`, `make_user`, `make_invoice`) wrap these."""

from __future__ import annotations

import itertools
from decimal import Decimal

from customers.models import Customer
from invoices.models import Invoice
from partners.models import Partner, User

_ids = itertools.count(1)
PASSWORD = "pw-for-tests-1"


def create_partner(name: str = "Acme MSP", **kwargs) -> Partner:
    return Partner.objects.create(name=name, **kwargs)


def create_user(partner, username=None, role=User.Role.OWNER, password=PASSWORD, **kwargs) -> User:
    username = username or f"{partner.slug}-{role}"
    return User.objects.create_user(
        username=username,
        email=f"{username}@example.test",
        password=password,
        partner=partner,
        role=role,
        **kwargs,
    )


def create_customer(
    partner, *, source: str = "autotask", autotask_id=None, name=None, **kw
) -> Customer:
    n = next(_ids)
    if source == "autotask" and autotask_id is None:
        autotask_id = 70000 + n
    return Customer.objects.create(
        partner=partner, source=source, autotask_id=autotask_id, name=name or f"Customer {n}", **kw
    )


def create_invoice(
    partner,
    *,
    total="100.00",
    source="autotask",
    autotask_id=None,
    number=None,
    customer=None,
    **kw,
) -> Invoice:
    """An invoice (and, unless given, its own customer) of `partner`; Autotask ids and numbers
    are unique across the test session."""
    n = next(_ids)
    customer = customer or create_customer(partner, source=source)
    if source == "autotask" and autotask_id is None:
        autotask_id = 80000 + n
    return Invoice.objects.create(
        partner=partner,
        customer=customer,
        source=source,
        autotask_id=autotask_id,
        number=number or f"INV-{n}",
        invoice_date=kw.pop("invoice_date", "2026-01-01"),
        total=Decimal(total),
        **kw,
    )
