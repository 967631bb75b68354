from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self):
        from . import metrics  # noqa: F401  (registers the /metrics families)
