"""Connecting a partner's Autotask (R1, R2): verify before saving, then store encrypted.

Nothing is saved until Autotask has confirmed the credentials: the zone is discovered from the
username (unknown user → its own message) and one cheap authenticated call is made
(ThresholdInformation: it needs no entity permission beyond API access, returns a few bytes,
and tells us the database's hourly threshold). Each failure maps to its own message.

Also the connection's cached Autotask Currencies (issue 16): read once at connect (when it
fails, the connect goes on: the first sync reads them), then only when a company names a
currencyID the cache does not have (`currencies_refresh`, called by the sync engine).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from django.utils import timezone

from config.api import DomainError
from integrations.autotask.client import AutotaskClient
from integrations.autotask.errors import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskError,
    AutotaskThrottled,
    AutotaskTransientError,
)
from integrations.autotask.query import Q, Query

from .filters import (
    DEFAULT_COMPANY_TYPES,
    company_conditions,
    invoice_conditions,
    validate_filters,
)
from .models import AutotaskConnection

log = logging.getLogger(__name__)

MESSAGES = {
    "unknown_user": (
        "Autotask does not know this API username (its zone could not be found). Copy the "
        "Username (Key) again from the API user in Autotask."
    ),
    "bad_secret": (
        "Autotask refused the Password (Secret) for this username. Generate a new secret on the "
        "API user in Autotask and paste it here."
    ),
    "bad_integration_code": (
        "Autotask refused our integration. On the API user in Autotask, set Integration Vendor "
        "to PaySync (API Tracking Identifier), save, and try again."
    ),
    "permission": (
        "The API user does not have enough permissions. In Autotask, set its Security Level to "
        "'API User (system)' and try again."
    ),
    "unreachable": (
        "Autotask could not be reached or did not answer in time. Nothing was saved; try again "
        "in a few minutes."
    ),
    "rate_limited": (
        "Autotask is limiting requests for this database right now. Nothing was saved; try "
        "again in a few minutes."
    ),
    "unexpected": "Autotask gave an unexpected answer. Nothing was saved; try again later.",
    "different_database": (
        "These credentials belong to a different Autotask database than this connection. "
        "Disconnect first to connect another database."
    ),
    "previous_database_data": (
        "Your synced data comes from another Autotask database. Connect that database again, "
        "or ask support to clear the old data before connecting a new one."
    ),
    "already_connected": "Autotask is already connected. Edit the connection instead.",
    "not_connected": "Autotask is not connected.",
    "credentials": (
        "We could not use the stored Autotask credentials. Enter the Username (Key) and "
        "Password (Secret) again under Edit connection."
    ),
}


class ConnectError(DomainError):
    def __init__(self, code: str, *, status_code: int = 400, retry_after: int | None = None):
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        super().__init__(MESSAGES[code], code=code, status_code=status_code, headers=headers)


# --- Autotask Currencies, cached per connection ------------------------------------------------


@dataclass(frozen=True)
class Currencies:
    """A database's Currencies: ``codes`` {currency id: ISO code}, ``internal`` the ISO code of
    its internal currency ("" when unknown)."""

    codes: dict[int, str] = dataclasses.field(default_factory=dict)
    internal: str = ""

    def code_for(self, currency_id: int | None) -> str | None:
        """The ISO code of a company's currencyID (null: the internal currency), or None when
        it is not known: the caller never guesses one."""
        if currency_id is None:
            return self.internal or None
        return self.codes.get(currency_id)


def currencies_read(client: AutotaskClient) -> Currencies:
    """One Currencies query (a database has a handful: one page), inactive ones included (a
    company may still name one). Rows without a usable code are left out. The internal currency
    is the row flagged isInternalCurrency, or the only currency of a single-currency database."""
    codes: dict[int, str] = {}
    internal = ""
    for currency in client.iter_currencies():
        if currency.code is None:
            log.warning("autotask currency %s has no ISO code in 'name': ignored", currency.id)
            continue
        codes[currency.id] = currency.code
        if currency.is_internal:
            internal = currency.code
    if not internal and len(set(codes.values())) == 1:
        internal = next(iter(codes.values()))
    return Currencies(codes=codes, internal=internal)


def connection_currencies(connection: AutotaskConnection) -> Currencies:
    """The connection's cached Currencies (JSON keys are strings)."""
    codes = {}
    for key, code in (connection.currencies or {}).items():
        if str(key).lstrip("-").isdigit() and isinstance(code, str) and code:
            codes[int(key)] = code
    return Currencies(codes=codes, internal=connection.internal_currency or "")


def currencies_store(connection: AutotaskConnection, currencies: Currencies) -> None:
    """Save the Currencies on the connection: one UPDATE of these columns only (the sync holds
    its own copy of the row; a full save would write back its other fields)."""
    values = {
        "currencies": {str(k): v for k, v in sorted(currencies.codes.items())},
        "internal_currency": currencies.internal,
        "currencies_read_at": timezone.now(),
    }
    AutotaskConnection.objects.for_partner(connection.partner_id).filter(pk=connection.pk).update(
        **values
    )
    for name, value in values.items():
        setattr(connection, name, value)


def currencies_refresh(connection: AutotaskConnection, client: AutotaskClient) -> Currencies:
    """Read the database's Currencies again (one request) and cache them on the connection."""
    currencies = currencies_read(client)
    currencies_store(connection, currencies)
    log.info(
        "autotask currencies of partner %s refreshed: %d, internal %s",
        connection.partner_id,
        len(currencies.codes),
        currencies.internal or "unknown",
    )
    return currencies


# --- verification and preview -------------------------------------------------------------------


@dataclass
class Verified:
    zone_name: str
    zone_url: str
    web_url: str
    ci: int | None
    threshold: int | None
    company_types: dict[int, str]
    # None: not read (or Autotask refused them); the first sync reads them then.
    currencies: Currencies | None = None


def _client(username: str, secret: str) -> AutotaskClient:
    # Connect-time checks answer a person waiting on a form: few retries, short timeouts.
    return AutotaskClient(username, secret, max_retries=1, timeout=15.0, max_backoff=2.0)


def _map_error(exc: AutotaskError) -> ConnectError:
    if isinstance(exc, AutotaskAuthError):
        return ConnectError(exc.kind if exc.kind in MESSAGES else "bad_secret")
    if isinstance(exc, AutotaskThrottled | AutotaskBudgetExhausted):
        retry = int(getattr(exc, "retry_after", None) or 60)
        return ConnectError("rate_limited", status_code=429, retry_after=retry)
    if isinstance(exc, AutotaskTransientError):
        return ConnectError("unreachable", status_code=503)
    return ConnectError("unexpected", status_code=502)


def _company_types(client: AutotaskClient) -> dict[int, str]:
    for field in client.get_entity_fields("Companies"):
        if field.name.lower() == "companytype" and field.picklist_values:
            return {
                int(v.value): v.label or str(v.value)
                for v in field.picklist_values
                if str(v.value).lstrip("-").isdigit()
            }
    return dict(DEFAULT_COMPANY_TYPES)


def _currencies_or_none(client: AutotaskClient) -> Currencies | None:
    """The Currencies for the cache, or None: a refusal here must not fail a connect whose
    credentials just worked (the first sync reads them, and says so if it cannot)."""
    try:
        return currencies_read(client)
    except AutotaskError as exc:
        log.warning("autotask currencies not read at connect: %s (%s)", exc.kind, exc.message)
        return None


def autotask_verify(
    *,
    username: str,
    secret: str,
    with_picklists: bool = True,
    with_currencies: bool | None = None,
) -> Verified:
    """Zone discovery + one authenticated call (+ the companyType picklist, + the Currencies
    for the connection's cache: both by default, neither for a plain check). Raises
    ConnectError with the message for the partner."""
    if with_currencies is None:
        with_currencies = with_picklists
    currencies = None
    try:
        with _client(username, secret) as client:
            zone = client.zone
            threshold = client.check_connection()
            types = _company_types(client) if with_picklists else dict(DEFAULT_COMPANY_TYPES)
            if with_currencies:
                currencies = _currencies_or_none(client)
    except AutotaskError as exc:
        log.info("autotask verify failed: %s (%s)", exc.kind, type(exc).__name__)
        raise _map_error(exc) from exc
    return Verified(
        zone_name=zone.zone_name or "",
        zone_url=zone.base_url,
        web_url=zone.web_url or "",
        ci=zone.ci,
        threshold=getattr(threshold, "external_request_threshold", None),
        company_types=types,
        currencies=currencies,
    )


def clean_filters(filters, company_types):
    from django.core.exceptions import ValidationError

    try:
        return validate_filters(filters, company_types=company_types)
    except ValidationError as exc:
        raise DomainError(
            "Some filters are not valid.",
            code="invalid_filters",
            extra={"errors": {"filters": exc.message_dict}},
        ) from exc


@dataclass
class Preview:
    customers: int
    invoices: int
    requests_used: int
    company_types: dict[int, str]


# Company filters an invoice query cannot express (Invoices has companyID, not the company's
# type or status): the sync skips the invoices of companies they leave out (sync/engine.py).
_COMPANY_ONLY_FILTERS = ("company_types", "active_only")
PREVIEW_IN_BATCH = 400  # ids per `companyID in` count (API.md §3.2)


def _count_invoices(client: AutotaskClient, filters: dict) -> tuple[int, int | None]:
    """(invoices, customers or None) the sync would bring. With a company type or active-only
    filter, the invoices counted are those of the companies that pass it: their ids listed
    (ids only, 500 a page) and counted `companyID in` ≤ 400 at a time, as the sync skips the
    rest; the listing also gives the customers' count. Without one: a single count."""
    conditions = invoice_conditions(filters)
    if not any(filters.get(key) for key in _COMPANY_ONLY_FILTERS):
        return client.count("Invoices", conditions or [Q.gte("id", 0)]), None
    query = Query(filters=company_conditions(filters), include_fields=["id"], max_records=500)
    ids = sorted(item["id"] for item in client.iter_records("Companies", query, parse=False))
    invoices = 0
    for start in range(0, len(ids), PREVIEW_IN_BATCH):
        batch = ids[start : start + PREVIEW_IN_BATCH]
        invoices += client.count("Invoices", [*conditions, Q.in_("companyID", batch)])
    return invoices, len(ids)


def autotask_preview(*, username: str, secret: str, filters: dict | None) -> Preview:
    """How many customers and invoices the filters would bring in, before saving anything.
    Cost: zone lookup + threshold + fields + 2 counts = 5 requests; with a company type or
    active-only filter, the passing companies' ids (1 request per 500) and one invoice count per
    400 of them instead of the 2 counts (5 for up to 400 such companies)."""
    cleaned = validate_filters(filters)
    try:
        with _client(username, secret) as client:
            client.check_connection()
            types = _company_types(client)
            cleaned = clean_filters(cleaned, types)
            invoices, customers = _count_invoices(client, cleaned)
            if customers is None:
                customers = client.count(
                    "Companies", company_conditions(cleaned) or [Q.gte("id", 0)]
                )
            used = client.stats.count
    except AutotaskError as exc:
        raise _map_error(exc) from exc
    return Preview(customers=customers, invoices=invoices, requests_used=used, company_types=types)


# --- the Connect form's pickers -----------------------------------------------------------------

PICKER_COMPANIES = 1000  # more than that: the form keeps its id box for companies


@dataclass
class Options:
    """What the Connect form offers to pick, read from the partner's own Autotask (picklists
    differ per tenant). ``companies_complete`` False: there are more than PICKER_COMPANIES."""

    company_types: dict[int, str]
    companies: list[tuple[int, str]]
    companies_complete: bool
    payment_terms: list[tuple[int, str]]


def autotask_options(*, username: str, secret: str) -> Options:
    """The companyType picklist, the companies (id and name, PICKER_COMPANIES at most) and the
    payment terms of this Autotask database. Cost: zone lookup + fields + 1 request per 500
    companies + 1 for PaymentTerms. Raises ConnectError with the message for the partner."""
    try:
        with _client(username, secret) as client:
            types = _company_types(client)
            companies: list[tuple[int, str]] = []
            # Company 0 is the tenant's own: never a customer, and no filter takes id 0.
            query = Query(filters=[Q.gt("id", 0)], include_fields=["id", "companyName"])
            complete = True
            for row in client.iter_records("Companies", query, parse=False):
                if len(companies) >= PICKER_COMPANIES:
                    complete = False
                    break
                companies.append((int(row["id"]), row.get("companyName") or f"#{row['id']}"))
            terms = [
                (term.id, term.name or f"#{term.id}")
                for term in client.iter_payment_terms(Query(filters=[Q.gte("id", 0)]))
            ]
    except AutotaskError as exc:
        log.info("autotask options failed: %s (%s)", exc.kind, type(exc).__name__)
        raise _map_error(exc) from exc
    return Options(
        company_types=types,
        companies=sorted(companies, key=lambda c: (c[1].lower(), c[0])),
        companies_complete=complete,
        payment_terms=sorted(terms, key=lambda t: (t[1].lower(), t[0])),
    )
