from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """The Autotask sandbox: a local Autotask REST server (see sandbox/README in the project
    README). It has no models; it is an app only for its management command."""

    name = "sandbox"
    verbose_name = "Autotask sandbox"
