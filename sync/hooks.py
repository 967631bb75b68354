"""Work that higher layers attach to the end of a successful sync.

The sync never imports the apps above it (payments re-matches its parked webhook events after
each finished sync: an invoice may have arrived, a balance changed). They register a hook here
from their AppConfig.ready(); `run_after_successful_sync` calls each one in the transaction
that finishes the run, in its own savepoint. A failing hook is logged and rolled back to its
savepoint; it never fails the sync nor stops the other hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

log = logging.getLogger(__name__)

AfterSyncHook = Callable[..., object]  # called as hook(partner=partner)

_after_successful_sync: dict[str, AfterSyncHook] = {}


def register_after_successful_sync(hook: AfterSyncHook) -> AfterSyncHook:
    """Register `hook` (once per qualified name, so a second ready() adds nothing)."""
    _after_successful_sync[f"{hook.__module__}.{hook.__qualname__}"] = hook
    return hook


def after_successful_sync_hooks() -> list[AfterSyncHook]:
    return list(_after_successful_sync.values())


def run_after_successful_sync(partner) -> None:
    for name, hook in list(_after_successful_sync.items()):
        try:
            with transaction.atomic():
                hook(partner=partner)
        except Exception:
            log.exception("after-sync hook %s failed for partner %s", name, partner.id)


# --- the invoice reconciler -------------------------------------------------------------------
#
# The sync reads Autotask; whether a read may be adopted depends on our own ledger (payments
# and pending write-backs), which lives in payments, above the sync. Payments registers the
# one reconciler (payments/services/reconcile.py) from PaymentsConfig.ready(); the engine calls
# it on every page of invoices, inside the page's transaction, from the upsert, with the rows
# whose invoice is here (locked by then, `upsert_page(adjust_existing=…)`): an invoice new here
# is adopted as read (rule 4 of payments/services/reconcile.py), so a page of new invoices
# costs it nothing. Unlike the
# after-sync hooks a failing reconciler fails the page: a read must never be adopted unchecked.

InvoiceReconciler = Callable[..., list[dict]]  # called as fn(partner=, rows=, run=, now=)

_invoice_reconciler: list[InvoiceReconciler] = []


def register_invoice_reconciler(reconciler: InvoiceReconciler) -> InvoiceReconciler:
    """Register the reconciler (one only: a second registration replaces the first)."""
    _invoice_reconciler[:] = [reconciler]
    return reconciler


def reconcile_invoice_rows(*, partner, rows: list[dict], run=None, now=None) -> list[dict]:
    """The rows an invoice page may upsert, as decided by the registered reconciler (rows
    unchanged when none is registered)."""
    if not _invoice_reconciler or not rows:
        return rows
    return _invoice_reconciler[0](partner=partner, rows=rows, run=run, now=now)
