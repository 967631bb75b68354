"""Secrets at rest: a thin field of our own over cryptography's MultiFernet that fails closed.

Why our own (../shared/RELIABILITY.md §1.7): the maintained encrypted-field packages return the
ciphertext when the key is wrong (which would then be sent to Autotask as the password) and the
others do not import on Django 5.

- Keys come only from settings.FIELD_ENCRYPTION_KEYS (a list; the first encrypts, all decrypt),
  never from SECRET_KEY.
- The database holds `v1:<key id>:<Fernet token>`; the key id (a short hash of the key) tells the
  rotation which rows are already on the first key.
- Reading a row never decrypts: the attribute is a `Sealed` value whose repr is masked, so a
  model's repr, a debug page or a log line cannot print the secret. `reveal()` decrypts and raises
  `SecretUnavailable` on a wrong key list; callers turn that into "needs attention", never into
  a request with garbage credentials.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from config.logging import register_secret

PREFIX = "v1"


class SecretUnavailable(Exception):
    """The stored secret cannot be decrypted with the configured keys."""


def key_id(key: str | bytes) -> str:
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:8]


@lru_cache(maxsize=8)
def _keyring(keys: tuple[str, ...]) -> tuple[MultiFernet, str]:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: cannot store secrets.")
    try:
        fernets = [Fernet(k) for k in keys]
    except ValueError as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds an invalid Fernet key.") from exc
    for k in keys:
        register_secret(k)
    return MultiFernet(fernets), key_id(keys[0])


def keyring() -> tuple[MultiFernet, str]:
    return _keyring(tuple(settings.FIELD_ENCRYPTION_KEYS))


def seal(plaintext: str) -> Sealed:
    fernet, primary = keyring()
    token = fernet.encrypt(plaintext.encode()).decode()
    return Sealed(f"{PREFIX}:{primary}:{token}")


def rotate_token(stored: str) -> str | None:
    """The stored value re-encrypted under the first key, or None when it already is."""
    fernet, primary = keyring()
    _, kid, token = _split(stored)
    if kid == primary:
        return None
    try:
        new_token = fernet.rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnavailable("No configured key decrypts this value.") from exc
    return f"{PREFIX}:{primary}:{new_token}"


def _split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SecretUnavailable("The stored value is not in the expected format.")
    return parts[0], parts[1], parts[2]


class Sealed:
    """An encrypted value as stored. Never prints its plaintext."""

    __slots__ = ("stored",)

    def __init__(self, stored: str):
        self.stored = stored

    @property
    def key_id(self) -> str:
        return _split(self.stored)[1]

    def reveal(self) -> str:
        fernet, _ = keyring()
        try:
            value = fernet.decrypt(_split(self.stored)[2].encode()).decode()
        except InvalidToken as exc:
            raise SecretUnavailable(
                "The stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS."
            ) from exc
        register_secret(value)
        return value

    def __eq__(self, other):
        return isinstance(other, Sealed) and other.stored == self.stored

    def __hash__(self):
        return hash(self.stored)

    def __repr__(self):
        return "<Sealed ********>"

    __str__ = __repr__


class EncryptedTextField(models.TextField):
    """Assign a plain `str` to set a secret; read back a `Sealed`. Stored encrypted."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(value)

    def to_python(self, value):
        if value is None or isinstance(value, Sealed):
            return value
        return value  # a plain string about to be sealed on save

    def pre_save(self, model_instance, add):
        value = getattr(model_instance, self.attname)
        if isinstance(value, str):
            value = seal(value)
            setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.stored
        if isinstance(value, str):
            return seal(value).stored
        raise TypeError("EncryptedTextField takes a str or a Sealed value.")

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        return "" if value is None else getattr(value, "stored", "")


def encrypted_fields():
    """Every (model, field) pair in the project that holds a secret."""
    from django.apps import apps

    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field
