"""The Autotask client factory: a client for a partner's stored API user.

Every caller that talks to a partner's Autotask (the sync, the write-back relay, invoice PDFs)
builds its client here, saying what it needs (`retry_policy`, `before_send`) instead of changing
a built client. Callers look it up as `clients.build_client` at call time, so a test or a bench
can wrap it in one place.
"""

from __future__ import annotations

from collections.abc import Callable

from config.encryption import SecretUnavailable

from .autotask.client import AutotaskClient
from .autotask.retry import RetryPolicy
from .models import AutotaskConnection


def build_client(
    connection: AutotaskConnection,
    *,
    retry_policy: RetryPolicy | None = None,
    before_send: Callable[[], None] | None = None,
) -> AutotaskClient:
    """A client for the partner's API user. Raises SecretUnavailable when the stored
    credentials cannot be decrypted: never a request with garbage credentials (SE-2)."""
    if connection.username is None or connection.secret is None:
        raise SecretUnavailable("No credentials stored (disconnected).")
    return AutotaskClient(
        connection.username.reveal(),
        connection.secret.reveal(),
        retry_policy=retry_policy,
        before_send=before_send,
    )
