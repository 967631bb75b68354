"""A partner's payment settings and webhook secrets: the endpoint and its signing secret, created
on first use and rotated with an overlap, and the keys a delivery is verified with."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.encryption import Sealed

from .. import webhooks
from ..models import PaymentSettings

ROTATION_OVERLAP = timedelta(hours=24)


def payment_settings_get(*, partner) -> PaymentSettings | None:
    return PaymentSettings.objects.for_partner(partner).first()


def payment_settings_create(*, partner) -> tuple[PaymentSettings, str | None]:
    """The partner's settings, created with a fresh endpoint and secret when missing. Returns
    the new secret (to show once) only when it was created now."""
    existing = payment_settings_get(partner=partner)
    if existing is not None:
        return existing, None
    secret = webhooks.generate_secret()
    try:
        with transaction.atomic():
            created = PaymentSettings.objects.create(partner=partner, secret=secret)
    except IntegrityError:  # created concurrently
        return PaymentSettings.objects.for_partner(partner).get(), None
    return created, secret


def payment_settings_rotate_secret(
    *, partner, overlap: timedelta = ROTATION_OVERLAP
) -> tuple[PaymentSettings, str]:
    """A new secret; the current one keeps verifying for `overlap` (then only the new one)."""
    settings_obj, secret = payment_settings_create(partner=partner)
    if secret is not None:
        return settings_obj, secret
    new_secret = webhooks.generate_secret()
    now = timezone.now()
    with transaction.atomic():
        s = PaymentSettings.objects.for_partner(partner).select_for_update().get()
        s.previous_secret = s.secret
        s.previous_secret_expires_at = now + overlap
        s.secret = new_secret
        s.rotated_at = now
        s.save(
            update_fields=["previous_secret", "previous_secret_expires_at", "secret", "rotated_at"]
        )
    return s, new_secret


def payment_settings_update(*, partner, allow_overpayment: bool) -> PaymentSettings:
    s, _ = payment_settings_create(partner=partner)
    PaymentSettings.objects.for_partner(partner).filter(pk=s.pk).update(
        allow_overpayment=allow_overpayment
    )
    s.allow_overpayment = allow_overpayment
    return s


@lru_cache(maxsize=2048)
def _hmac_key(stored: str) -> bytes:
    # Keyed by the ciphertext: decrypting once per process keeps verification ~µs. A rotated
    # secret has another ciphertext, so stale entries are simply never asked for again.
    return webhooks.secret_key(Sealed(stored).reveal())


def verification_keys(settings_obj: PaymentSettings, *, now: datetime) -> list[bytes]:
    keys = [_hmac_key(settings_obj.secret.stored)]
    if (
        settings_obj.previous_secret is not None
        and settings_obj.previous_secret_expires_at is not None
        and now < settings_obj.previous_secret_expires_at
    ):
        keys.append(_hmac_key(settings_obj.previous_secret.stored))
    return keys
