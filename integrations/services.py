"""Connecting a partner's Autotask (R1, R2): verify before saving, then store encrypted.

Nothing is saved until Autotask has confirmed the credentials: the zone is discovered from the
username (unknown user → its own message) and one cheap authenticated call is made
(ThresholdInformation: it needs no entity permission beyond API access, returns a few bytes,
and tells us the database's hourly threshold). Each failure maps to its own message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
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
from integrations.autotask.query import Q
from invoices.services import invoices_relabel
from sync import filters as sync_filters

from .filters import DEFAULT_COMPANY_TYPES, validate_filters
from .models import AutotaskConnection, IntegrationEvent

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
}


class ConnectError(DomainError):
    def __init__(self, code: str, *, status_code: int = 400, retry_after: int | None = None):
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        super().__init__(MESSAGES[code], code=code, status_code=status_code, headers=headers)


@dataclass
class Verified:
    zone_name: str
    zone_url: str
    web_url: str
    ci: int | None
    threshold: int | None
    company_types: dict[int, str]


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


def autotask_verify(*, username: str, secret: str, with_picklists: bool = True) -> Verified:
    """Zone discovery + one authenticated call (+ the companyType picklist). Raises
    ConnectError with the message for the partner."""
    try:
        with _client(username, secret) as client:
            zone = client.zone
            threshold = client.check_connection()
            types = _company_types(client) if with_picklists else dict(DEFAULT_COMPANY_TYPES)
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
    )


def _clean_filters(filters, company_types):
    from django.core.exceptions import ValidationError

    try:
        return validate_filters(filters, company_types=company_types)
    except ValidationError as exc:
        raise DomainError(
            "Some filters are not valid.",
            code="invalid_filters",
            extra={"errors": {"filters": exc.message_dict}},
        ) from exc


@transaction.atomic
def autotask_connect(
    *,
    partner,
    actor,
    account_email: str,
    username: str,
    secret: str,
    identifier: str,
    filters: dict | None,
) -> AutotaskConnection:
    """Verify, then create (or re-create after a disconnect) the connection and start the
    first sync. Raises ConnectError/DomainError and saves nothing on failure."""
    from partners.models import Partner
    from sync.models import SyncRun, SyncState
    from sync.services import sync_run_create

    cleaned = validate_filters(filters)  # fail fast before calling Autotask
    existing = AutotaskConnection.objects.select_for_update().filter(partner=partner).first()
    if existing and existing.is_active:
        raise ConnectError("already_connected", status_code=409)
    verified = autotask_verify(username=username, secret=secret)
    cleaned = _clean_filters(cleaned, verified.company_types)
    if existing and existing.database_ci and verified.ci and existing.database_ci != verified.ci:
        from invoices.models import Invoice

        if Invoice.objects.for_partner(partner).filter(source="autotask").exists():
            raise ConnectError("previous_database_data", status_code=409)
    same_database = bool(existing and existing.database_ci == verified.ci)

    conn = existing or AutotaskConnection(partner=partner)
    old_identifier = conn.identifier if existing else None
    conn.status = AutotaskConnection.Status.CONNECTED
    conn.account_email = account_email
    conn.username = username
    conn.secret = secret
    conn.username_last4 = username[-4:]
    conn.identifier = identifier
    conn.filters = cleaned
    conn.zone_name, conn.zone_url, conn.web_url = (
        verified.zone_name,
        verified.zone_url,
        verified.web_url,
    )
    conn.database_ci = verified.ci
    conn.connected_at = timezone.now()
    conn.disconnected_at = None
    conn.schedules_paused = False
    conn.last_error_kind = conn.last_error_message = ""
    conn.last_error_at = None
    conn.save()
    if existing and old_identifier != identifier:
        invoices_relabel(partner=partner, identifier=identifier)
    if partner.primary_integration == Partner.Integration.NONE:
        partner.primary_integration = Partner.Integration.AUTOTASK
        partner.save(update_fields=["primary_integration"])
    IntegrationEvent.objects.create(
        partner=partner,
        kind=IntegrationEvent.Kind.CONNECTED,
        actor=actor,
        details={"zone": verified.zone_name, "ci": verified.ci, "reconnect": bool(existing)},
    )
    state, _ = SyncState.objects.get_or_create(partner=partner)
    # Reconnecting the same database continues where it stopped (cursors kept); otherwise
    # (or if the first sync never finished) a full initial sync.
    kind = (
        SyncRun.Kind.NEW_DATA
        if same_database and "initial" in (state.last_success or {})
        else SyncRun.Kind.INITIAL
    )
    if not same_database:
        state.invoices_created_cursor = state.companies_changed_cursor = None
        state.last_success = {}
        state.save(
            update_fields=["invoices_created_cursor", "companies_changed_cursor", "last_success"]
        )
    conn.first_run = sync_run_create(
        partner=partner, kind=kind, trigger=SyncRun.Trigger.CONNECT, requested_by=actor
    )
    return conn


@transaction.atomic
def autotask_update(
    *,
    connection: AutotaskConnection,
    actor,
    account_email=None,
    username=None,
    secret=None,
    identifier=None,
    filters=None,
) -> AutotaskConnection:
    """Edit a live connection. New credentials are verified first and must reach the same
    Autotask database; a new identifier re-labels existing invoices at once (no sync)."""
    conn = AutotaskConnection.objects.select_for_update().get(pk=connection.pk)
    if not conn.is_active:
        raise ConnectError("not_connected", status_code=409)
    changed = []
    company_types = None
    if username or secret:
        new_username = username or conn.username.reveal()
        new_secret = secret or conn.secret.reveal()
        verified = autotask_verify(username=new_username, secret=new_secret)
        if conn.database_ci and verified.ci and conn.database_ci != verified.ci:
            raise ConnectError("different_database", status_code=409)
        conn.username, conn.secret = new_username, new_secret
        conn.username_last4 = new_username[-4:]
        conn.zone_name, conn.zone_url, conn.web_url = (
            verified.zone_name,
            verified.zone_url,
            verified.web_url,
        )
        conn.database_ci = verified.ci or conn.database_ci
        if conn.status == AutotaskConnection.Status.NEEDS_ATTENTION:
            conn.status = AutotaskConnection.Status.CONNECTED
            conn.last_error_kind = conn.last_error_message = ""
            conn.last_error_at = None
        company_types = verified.company_types
        changed.append("credentials")
    if filters is not None:
        conn.filters = _clean_filters(filters, company_types)
        changed.append("filters")
    if account_email:
        conn.account_email = account_email
        changed.append("account_email")
    if identifier and identifier != conn.identifier:
        conn.identifier = identifier
        changed.append("identifier")
    conn.save()
    if "identifier" in changed:
        invoices_relabel(partner=conn.partner, identifier=identifier)
    if changed:
        IntegrationEvent.objects.create(
            partner=conn.partner,
            kind=IntegrationEvent.Kind.UPDATED,
            actor=actor,
            details={"changed": changed},
        )
    return conn


@transaction.atomic
def autotask_disconnect(*, connection: AutotaskConnection, actor) -> AutotaskConnection:
    """Erase the credentials, stop every schedule, keep the synced data, record it."""
    from sync.models import SyncRun

    conn = AutotaskConnection.objects.select_for_update().get(pk=connection.pk)
    if not conn.is_active:
        raise ConnectError("not_connected", status_code=409)
    conn.username = None
    conn.secret = None
    conn.status = AutotaskConnection.Status.DISCONNECTED
    conn.disconnected_at = timezone.now()
    conn.save()
    SyncRun.objects.filter(partner=conn.partner, status=SyncRun.Status.QUEUED).update(
        status=SyncRun.Status.FAILED,
        finished_at=timezone.now(),
        error_kind="not_connected",
        error_message="Autotask was disconnected before this run started.",
    )
    IntegrationEvent.objects.create(
        partner=conn.partner, kind=IntegrationEvent.Kind.DISCONNECTED, actor=actor
    )
    return conn


@dataclass
class Preview:
    customers: int
    invoices: int
    requests_used: int
    company_types: dict[int, str]


def autotask_preview(*, username: str, secret: str, filters: dict | None) -> Preview:
    """How many customers and invoices the filters would bring in, before saving anything.
    Cost: zone lookup + threshold + fields + 2 counts = 5 requests."""
    cleaned = validate_filters(filters)
    try:
        with _client(username, secret) as client:
            client.check_connection()
            types = _company_types(client)
            cleaned = _clean_filters(cleaned, types)
            customers = client.count(
                "Companies", sync_filters.company_conditions(cleaned) or [Q.gte("id", 0)]
            )
            invoices = client.count(
                "Invoices", sync_filters.invoice_conditions(cleaned) or [Q.gte("id", 0)]
            )
            used = client.stats.count
    except AutotaskError as exc:
        raise _map_error(exc) from exc
    return Preview(customers=customers, invoices=invoices, requests_used=used, company_types=types)
