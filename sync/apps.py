from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"

    def ready(self):
        from . import metrics  # noqa: F401  (registers the /metrics families)
