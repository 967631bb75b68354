"""Standard Webhooks signatures (https://www.standardwebhooks.com/), verified with the stdlib.

Why not only the `standardwebhooks` package: its timestamp check, like stripe-python's, is the
kind that may pass a signature dated in the future (RELIABILITY §1.1); we check ±300 s in both
directions ourselves, and the HMAC is three lines. The package is used in the tests as a second,
independent signer (WH-1).

- Signed content: `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256, base64.
- Key: the base64-decoded part after `whsec_` (secrets with or without the prefix are accepted).
- `webhook-signature` holds space-separated `v1,<base64>` entries; any valid `v1` entry passes
  (old and new secrets overlap during a rotation); other versions are skipped.
- Compared in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from config.logging import register_secret

TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024
SECRET_PREFIX = "whsec_"
_EVENT_ID = re.compile(r"^[A-Za-z0-9_\-.:]{1,255}$")
_TIMESTAMP = re.compile(r"^\d{1,12}$")


class VerificationError(Exception):
    """The delivery is not provably from the processor. `reason` is a short label for the
    counter and the ops list; it never includes the secret or the signature."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedHeaders:
    event_id: str
    timestamp: int


def generate_secret() -> str:
    """A new `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret, with or without the `whsec_` prefix."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret must be base64 after whsec_") from exc
    register_secret(secret)
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The base64 signature (without the `v1,` prefix)."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    return "v1," + sign(secret_key(secret), event_id, timestamp, body)


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    keys: Iterable[bytes],
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> VerifiedHeaders:
    """Check the three headers and the signature against any of `keys`; raise
    VerificationError otherwise. `headers` is case-insensitive (Django's request.headers)."""
    event_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not event_id or not timestamp or not signature:
        raise VerificationError("missing_headers")
    if not _EVENT_ID.match(event_id):
        raise VerificationError("bad_event_id")
    if not _TIMESTAMP.match(timestamp):
        raise VerificationError("bad_timestamp")
    ts = int(timestamp)
    # Both directions: a signature dated in the future is as suspect as an old one.
    if abs(now - ts) > tolerance:
        raise VerificationError("timestamp_out_of_tolerance")
    candidates = []
    for entry in signature.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and value:
            try:
                candidates.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    if not candidates:
        raise VerificationError("no_v1_signature")
    signed = f"{event_id}.{timestamp}.".encode() + body
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        # Compare against every candidate without stopping early on a match per key.
        if any(hmac.compare_digest(expected, c) for c in candidates):
            return VerifiedHeaders(event_id=event_id, timestamp=ts)
    raise VerificationError("bad_signature")
