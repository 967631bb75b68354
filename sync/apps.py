from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"

    def ready(self):
        import config.lookups  # noqa: F401  (registers `__any`, used by the sync's queries)

        from . import metrics  # noqa: F401  (registers the /metrics families)
