"""What the sync's pages and API say to the partner's users, in plain words: why manual syncs
are unavailable, what a failed run means (the run's page has the raw message), what kind of run
is in progress, and how long until a manual sync may start again."""

from __future__ import annotations

import math

from .models import SyncRun

MESSAGES = {
    "not_autotask": (
        "Manual syncs are for partners whose primary integration is Autotask; yours is not."
    ),
    "not_connected": "Autotask is not connected. Connect it under Integrations first.",
}

# What a failed run means, for the person who clicked (the run's page has the raw message).
PLAIN_ERRORS = {
    "worker_lost": "The sync stopped on our side and was given up. You can start it again now.",
    "internal": "The sync failed because of an error on our side. You can start it again now.",
    "not_connected": "Autotask was not connected when the sync started, so nothing was fetched.",
    "credentials": (
        "We could not use the stored Autotask credentials. Reconnect Autotask under "
        "Integrations; you can then start the sync again."
    ),
    "auth:bad_secret": (
        "Autotask refused the API user's password (Secret). Generate a new one in Autotask and "
        "update it under Integrations."
    ),
    "auth:unknown_user": (
        "Autotask no longer knows the API username. Check the API user in Autotask and update "
        "it under Integrations."
    ),
    "auth:bad_integration_code": (
        "Autotask refused our integration: set Integration Vendor to PaySync on the API user."
    ),
    "auth:permission": (
        "The Autotask API user lacks permissions: set its security level to 'API User (system)'."
    ),
    "request": "Autotask rejected a request of this sync. Nothing past that point was changed.",
    "not_found": "Autotask answered 'not found' to a request of this sync.",
    "response": "Autotask sent an answer we could not read, so the sync stopped there.",
    "foreign_origin": "Autotask pointed us to another server, so the sync stopped there.",
}

TRIGGER_WORDS = {
    SyncRun.Trigger.SCHEDULE: "scheduled",
    SyncRun.Trigger.MANUAL: "manual",
    SyncRun.Trigger.OPS: "support-started",
}


def format_wait(seconds: float) -> str:
    """Rounded up, so "in 0 min" is never shown while waiting: "in 7 min", "in 60 min",
    "in 11 h 59 min"."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes <= 60:
        return f"in {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"in {hours} h {rest} min" if rest else f"in {hours} h"


def plain_error(run: SyncRun) -> str:
    """The run's error in plain words, for the Preferences page; "" when there is none."""
    if run.status == SyncRun.Status.FAILED:
        if run.error_kind in PLAIN_ERRORS:
            return PLAIN_ERRORS[run.error_kind]
        return run.error_message or "The sync failed."
    if run.status == SyncRun.Status.PARTIAL:
        return f"{run.failed} record(s) could not be saved; the rest was synced."
    if run.is_active and run.error_kind:
        return "Autotask is busy or unreachable right now; the sync will retry by itself."
    return ""


def describe_run(run: SyncRun) -> str:
    """ "scheduled unpaid invoices sync", "first sync after connecting"."""
    if run.trigger == SyncRun.Trigger.CONNECT:
        return "first sync after connecting"
    word = TRIGGER_WORDS.get(run.trigger, run.trigger)
    return f"{word} {run.get_kind_display().lower()} sync"


# Synced fields as a partner calls them (run pages, the invoice timeline): never the raw name.
FIELD_LABELS = {
    "autotask_invoice_number": "Autotask invoice number",
    "number": "Invoice number",
    "invoice_date": "Invoice date",
    "due_date": "Due date",
    "total": "Total",
    "tax": "Tax",
    "credits": "Credits in Autotask",
    "currency": "Currency",
    "paid_in_autotask_on": "Paid in Autotask",
    "voided": "Voided in Autotask",
    "payment_term_id": "Payment terms",
    "customer_id": "Customer",
    "autotask_created_at": "Created in Autotask",
    "missing_in_autotask_since": "No longer in Autotask",
    "archived_at": "Archived",
    "paid_here": "Paid here",
    "name": "Name",
    "email": "Email",
    "phone": "Phone",
    "is_active": "Active in Autotask",
    "address": "Address",
    "company_type": "Company type",
}


def field_label(field: str) -> str:
    return FIELD_LABELS.get(field) or field.replace("_", " ").capitalize()


def field_value(field: str, value: str | None) -> str:
    """A stored change-log value in plain words."""
    if value is None or value == "":
        return "none"
    if field in ("voided", "is_active"):
        return "yes" if value in ("True", "true", "1") else "no"
    if field in ("missing_in_autotask_since", "archived_at", "autotask_created_at"):
        return value[:16].replace("T", " ")
    return value
