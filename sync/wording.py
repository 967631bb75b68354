"""What the sync's pages and API say to the partner's users, in plain words: why manual syncs
are unavailable, what a failed run means (the run's page has the raw message), what kind of run
is in progress, and how long until a manual sync may start again."""

from __future__ import annotations

import math

from integrations.guidance import PLAIN_FAILURES, plain_failure

from .models import SyncRun

MESSAGES = {
    "not_autotask": (
        "Manual syncs are for partners whose primary integration is Autotask; yours is not."
    ),
    "not_connected": "Autotask is not connected. Connect it under Integrations first.",
}

# What a failed run means for the person who clicked: integrations/guidance.py, one table for
# the run pages, the Integrations page and the banner (the raw message is for ops only).
PLAIN_ERRORS = PLAIN_FAILURES

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
        return plain_failure(run.error_kind, run_id=run.pk)
    if run.status == SyncRun.Status.PARTIAL:
        return f"{run.failed} record(s) could not be saved; the rest was synced."
    if run.is_active and run.error_kind:
        # Queued again after throttling or an outage: waiting for Autotask, by itself.
        return plain_failure(run.error_kind)
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
