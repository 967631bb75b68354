"""Connect use cases (R1, R2): connect, edit and disconnect a partner's Autotask.

Orchestrators at the top layer: each verifies with Autotask through the connection layer
(integrations/services.py), then saves the connection and starts what follows in the layers
below (the first sync run, re-labelled invoices) in one transaction.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from config.encryption import SecretUnavailable
from invoices.models import Invoice
from invoices.services import invoices_relabel
from partners.models import Partner
from sync.models import SyncRun, SyncState
from sync.services.runs import sync_run_create

from .autotask.errors import AUTH_KINDS
from .filters import DEFAULT_COMPANY_TYPES, validate_filters
from .models import AutotaskConnection, IntegrationEvent
from .services import ConnectError, Currencies, autotask_verify, clean_filters


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
    cleaned = validate_filters(filters)  # fail fast before calling Autotask
    existing = AutotaskConnection.objects.select_for_update().filter(partner=partner).first()
    if existing and existing.is_active:
        raise ConnectError("already_connected", status_code=409)
    verified = autotask_verify(username=username, secret=secret)
    cleaned = clean_filters(cleaned, verified.company_types)
    if (
        existing
        and existing.database_ci
        and verified.ci
        and existing.database_ci != verified.ci
        and Invoice.objects.for_partner(partner).filter(source="autotask").exists()
    ):
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
    if verified.currencies is not None:
        _set_currencies(conn, verified.currencies)
    elif not same_database:
        _set_currencies(conn, Currencies())  # another database's ids: the first sync reads them
    conn.connected_at = timezone.now()
    conn.disconnected_at = None
    conn.schedules_paused = False
    conn.last_error_kind = conn.last_error_message = ""
    conn.last_error_at = conn.attention_since = None
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


def _set_currencies(conn: AutotaskConnection, currencies: Currencies) -> None:
    """The database's Currencies read by the verification, cached on the connection (saved
    with it): the first sync then needs no Currencies request."""
    conn.currencies = {str(k): v for k, v in sorted(currencies.codes.items())}
    conn.internal_currency = currencies.internal
    conn.currencies_read_at = timezone.now() if currencies.codes else None


def _lock_live(connection: AutotaskConnection) -> AutotaskConnection:
    """The connection, locked for this transaction; 409 `not_connected` when disconnected."""
    conn = (
        AutotaskConnection.objects.for_partner(connection.partner_id)
        .select_for_update()
        .get(pk=connection.pk)
    )
    if not conn.is_active:
        raise ConnectError("not_connected", status_code=409)
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
    Autotask database; a new identifier re-labels existing invoices at once (no sync). New
    credentials that work on a connection with a problem fix it: the connection is restored
    and a catch-up sync queued (`conn.catch_up_run`; None otherwise)."""
    conn = _lock_live(connection)
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
        if verified.currencies is not None:
            _set_currencies(conn, verified.currencies)
        if _had_problem(conn):
            conn.mark_restored()
            changed.append("fixed")
        company_types = verified.company_types
        changed.append("credentials")
    if filters is not None:
        if company_types is None:
            company_types = _company_types_for(conn, filters)
        conn.filters = clean_filters(filters, company_types)
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
    conn.catch_up_run = _catch_up(conn, actor) if "fixed" in changed else None
    if changed:
        IntegrationEvent.objects.create(
            partner=conn.partner,
            kind=IntegrationEvent.Kind.UPDATED,
            actor=actor,
            details={"changed": [c for c in changed if c != "fixed"], "fixed": "fixed" in changed},
        )
    return conn


def _company_types_for(conn: AutotaskConnection, filters) -> dict[int, str]:
    """The picklist to check company-type filters against: the standard one, or (for a type
    it lacks: the tenant's own) the live one read with the stored credentials."""
    cleaned = validate_filters(filters)
    if set(cleaned.get("company_types") or ()) <= set(DEFAULT_COMPANY_TYPES):
        return DEFAULT_COMPANY_TYPES
    try:
        username, secret = conn.username.reveal(), conn.secret.reveal()
    except (AttributeError, SecretUnavailable):
        raise ConnectError("credentials") from None
    return autotask_verify(username=username, secret=secret, with_currencies=False).company_types


def _had_problem(conn: AutotaskConnection) -> bool:
    """Needs attention, or the last sync with it failed (a refused request also counts)."""
    return conn.status == AutotaskConnection.Status.NEEDS_ATTENTION or bool(conn.last_error_kind)


def _catch_up(conn: AutotaskConnection, actor) -> SyncRun | None:
    """After a fix, an incremental run picks up what was missed while the connection was
    broken (it starts from the cursors of the last success). None when a data run is already
    queued or running: that one picks it up."""
    busy = (
        SyncRun.objects.for_partner(conn.partner)
        .filter(
            status__in=SyncRun.ACTIVE,
            kind__in=[SyncRun.Kind.INITIAL, SyncRun.Kind.NEW_DATA],
        )
        .exists()
    )
    if busy:
        return None
    state = SyncState.objects.for_partner(conn.partner).first()
    kind = (
        SyncRun.Kind.NEW_DATA
        if state and "initial" in (state.last_success or {})
        else SyncRun.Kind.INITIAL
    )
    return sync_run_create(
        partner=conn.partner, kind=kind, trigger=SyncRun.Trigger.CONNECT, requested_by=actor
    )


def autotask_test(*, connection: AutotaskConnection, actor) -> AutotaskConnection:
    """Test connection from the Integrations page, with the stored credentials (never held
    back by a manual-sync cooldown: it only asks Autotask who we are). A pass on a connection
    with a problem restores it and queues the catch-up sync (`conn.catch_up_run`); an auth
    refusal marks it needs attention (kept: not rolled back with the error). Raises
    ConnectError with the plain message."""
    conn = connection
    if not conn.is_active:
        raise ConnectError("not_connected", status_code=409)
    try:
        username, secret = conn.username.reveal(), conn.secret.reveal()
    except (AttributeError, SecretUnavailable):
        conn.record_error("credentials", "Stored credentials cannot be used.", needs_attention=True)
        raise ConnectError("credentials") from None
    try:
        verified = autotask_verify(username=username, secret=secret, with_picklists=False)
    except ConnectError as exc:
        if exc.code in AUTH_KINDS:
            conn.record_error(exc.code, exc.message, needs_attention=True)
        raise
    if conn.database_ci and verified.ci and conn.database_ci != verified.ci:
        raise ConnectError("different_database", status_code=409)
    with transaction.atomic():
        conn = _lock_live(connection)
        conn.catch_up_run = None
        if _had_problem(conn):
            conn.mark_restored()
            conn.save()
            conn.catch_up_run = _catch_up(conn, actor)
            IntegrationEvent.objects.create(
                partner=conn.partner,
                kind=IntegrationEvent.Kind.UPDATED,
                actor=actor,
                details={"changed": [], "fixed": True, "by": "test"},
            )
    return conn


@transaction.atomic
def autotask_disconnect(*, connection: AutotaskConnection, actor) -> AutotaskConnection:
    """Erase the credentials, stop every schedule, keep the synced data, record it."""
    conn = _lock_live(connection)
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
