"""The Idempotency-Key store (RELIABILITY §4), shared by every partner's POSTs: payments,
customers and invoices created here, through the API (`IdempotentCreateMixin`) and the
dashboard's one-time form tokens.

Per partner: the same key and body → the first response again (`Idempotent-Replayed: true`),
another body → 422, the first still running → 409. Only completed outcomes are kept (2xx and
409 conflicts, `is_completed_outcome`): a validation failure frees its key for the corrected
retry. Records are kept at least 24 hours
(`IDEMPOTENCY_RETENTION`), then purged by the hourly `payments.idempotency.purge` task
(partners/tasks.py; the name predates the move and beat rows use it).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers, status
from rest_framework.response import Response

from config.api import DomainError

from .models import IdempotencyKey

IDEMPOTENCY_RETENTION = timedelta(hours=48)  # ≥ 24 h promised
IDEMPOTENCY_STALE = timedelta(minutes=10)  # an in-progress key this old was lost with a crash


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def idempotency_key_begin(*, partner, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Claim `key` for this request. Returns None when claimed (go ahead), the finished record
    to replay, or raises 409 (the first is still running) / 422 (another body)."""
    if not key or len(key) > 255:
        raise DomainError(
            "Idempotency-Key must be 1 to 255 characters.", code="bad_idempotency_key"
        )
    now = timezone.now()
    for _ in range(3):
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(partner=partner, key=key, fingerprint=fingerprint)
            return None
        except IntegrityError:
            pass
        record = IdempotencyKey.objects.for_partner(partner).filter(key=key).first()
        if record is None:
            continue  # purged meanwhile: try again
        if record.fingerprint != fingerprint:
            raise DomainError(
                "This Idempotency-Key was used with another request.",
                code="idempotency_key_reused",
                status_code=422,
            )
        if not record.in_progress:
            return record
        if record.created_at < now - IDEMPOTENCY_STALE:
            # Its request died before finishing (no effect was committed with it): take over.
            IdempotencyKey.objects.filter(pk=record.pk, in_progress=True).delete()
            continue
        raise DomainError(
            "A request with this Idempotency-Key is still being processed.",
            code="idempotency_key_in_progress",
            status_code=409,
        )
    raise DomainError(
        "Idempotency-Key is busy.", code="idempotency_key_in_progress", status_code=409
    )


def idempotency_key_finish(*, partner, key: str, status: int, body) -> None:
    IdempotencyKey.objects.for_partner(partner).filter(key=key).update(
        in_progress=False, response_status=status, response_body=body
    )


def is_completed_outcome(status_code: int) -> bool:
    """Only completed outcomes are stored under a key and replayed: a success (2xx) and a
    conflict (409: the state refused it, and would again). Validation failures (400, 422,
    404 …) are not: the client fixes the request and retries with the same key."""
    return 200 <= status_code < 300 or status_code == 409


def idempotency_key_release(*, partner, key: str) -> None:
    """The request failed unexpectedly (5xx): forget the key so a retry can run."""
    IdempotencyKey.objects.for_partner(partner).filter(key=key, in_progress=True).delete()


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - IDEMPOTENCY_RETENTION
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# --- the API side ---------------------------------------------------------------------------


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},  # idempotency_key_begin's bounds
    location=OpenApiParameter.HEADER,
    required=False,
    description="Same key and body within 24 h: the first response again. Other body: 422. "
    "First still running: 409.",
)


IDEMPOTENCY_RESPONSES = {
    409: OpenApiResponse(description="Idempotency-Key still in use, or what it names is archived"),
    422: OpenApiResponse(description="Idempotency-Key reused with another body"),
}


class IdempotentCreateMixin:
    """`create()` honouring `Idempotency-Key` (per partner, this module): same key and
    body → the saved response again (`Idempotent-Replayed: true`), another body → 422, the first
    still running → 409. The view implements `_create(request)`; its effect and the saved
    answer commit together."""

    def create(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self._create(request)
        fingerprint = request_fingerprint(request.method, request.path, request.body)
        saved = idempotency_key_begin(partner=self.partner, key=key, fingerprint=fingerprint)
        if saved is not None:
            response = Response(saved.response_body, status=saved.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            with transaction.atomic():
                # The effect and the saved answer commit together: a crash leaves neither.
                try:
                    response = self._create(request)
                except DomainError as exc:
                    response = Response(
                        {"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.status
                    )
                except serializers.ValidationError as exc:
                    response = Response(exc.detail, status=status.HTTP_400_BAD_REQUEST)
                if is_completed_outcome(response.status_code):
                    body = json.loads(json.dumps(response.data, default=str))
                    idempotency_key_finish(
                        partner=self.partner, key=key, status=response.status_code, body=body
                    )
                else:
                    # A refused request changed nothing: the corrected retry with the same
                    # key must run, not replay the refusal (Stripe keeps no 4xx but 409).
                    idempotency_key_release(partner=self.partner, key=key)
        except Exception:
            idempotency_key_release(partner=self.partner, key=key)
            raise
        return response
