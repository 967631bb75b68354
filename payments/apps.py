from django.apps import AppConfig

from sync.hooks import register_after_successful_sync, register_invoice_reconciler


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self):
        # Imported here, not at the top: they import models, which the app registry loads
        # only after every AppConfig.
        from . import metrics  # noqa: F401  (registers the /metrics families)
        from .services.reconcile import reconcile_invoice_rows, replacements_fill
        from .services.webhook_events import webhook_events_rematch

        # Parked processor events are re-matched after every finished sync of their partner
        # (an invoice may have arrived, a balance changed).
        register_after_successful_sync(webhook_events_rematch)
        # A voided invoice's replacement may arrive after the void: propose it when it does.
        register_after_successful_sync(replacements_fill)
        # The reconciliation rule: what of each Autotask invoice read the sync may adopt,
        # given our ledger (payments/services/reconcile.py).
        register_invoice_reconciler(reconcile_invoice_rows)
