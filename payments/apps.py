from django.apps import AppConfig

from sync.hooks import register_after_successful_sync


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self):
        # Imported here, not at the top: they import models, which the app registry loads
        # only after every AppConfig.
        from . import metrics  # noqa: F401  (registers the /metrics families)
        from .services.webhook_events import webhook_events_rematch

        # Parked processor events are re-matched after every finished sync of their partner
        # (an invoice may have arrived, a balance changed).
        register_after_successful_sync(webhook_events_rematch)
