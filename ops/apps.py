from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The ops console: the Django admin of every app (no models of its own)."""

    name = "ops"
    verbose_name = "Ops console"
