"""API tokens stored hashed (issue 18).

A token is `psk_` + 43 URL-safe characters (256 random bits). We store its SHA-256 only: with
that much entropy a fast hash is enough (no salt, no slow KDF; lookup is by the digest), and a
database dump yields no usable token. The value is returned once, by `api_token_create`.

- Expiry: `settings.API_TOKEN_TTL_DAYS` (90 by default); a creator may ask for fewer days.
- Revocation: by the owner (API or dashboard), and for every token of a user whose password
  changes or who is deactivated (partners/signals.py).
- `last_used_at` is written at most once a minute per token (a conditional UPDATE), so a busy
  integration does not turn every API call into a write.
- Tokens migrated from DRF's plaintext `authtoken_token` keep working: their digest is the
  SHA-256 of the old 40-character key (partners/migrations/0005).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import ApiToken

TOKEN_PREFIX = "psk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def token_ttl_days() -> int:
    return int(settings.API_TOKEN_TTL_DAYS)


def api_token_create(*, user, name: str, expires_in_days: int | None = None):
    """A new token for `user` (who must belong to a partner): (the row, the raw value)."""
    if user.partner_id is None:
        raise ValueError("API tokens are for partner users.")
    days = token_ttl_days() if expires_in_days is None else min(expires_in_days, token_ttl_days())
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        partner_id=user.partner_id,
        user=user,
        name=name.strip()[:100] or "API token",
        prefix=raw[:8],
        digest=token_digest(raw),
        expires_at=timezone.now() + timedelta(days=max(1, days)),
    )
    return token, raw


def api_token_authenticate(raw: str) -> ApiToken | None:
    """The live token with this value, its user loaded; None when unknown, expired, revoked or
    its user is inactive. Records the use (at most once a minute)."""
    if not raw or len(raw) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(raw), revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token


def api_token_revoke(token: ApiToken, *, reason: str = ApiToken.RevokedReason.OWNER) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )


def api_tokens_revoke_for_user(user_id: int, *, reason: str) -> int:
    return ApiToken.objects.filter(user_id=user_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )
