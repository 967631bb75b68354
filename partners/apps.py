from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "partners"
    verbose_name = "Partners and users"

    def ready(self):
        from . import signals  # noqa: F401  (revoke API tokens on password change)
