"""Errors raised by the Autotask client, and the one place that maps HTTP responses to them.

Every error carries ``retryable``: the client's retry loop, Celery task policies and the sync
layer read only that flag (plus ``retry_after`` / ``resume_at``), never status codes. The mapping
follows ``shared/autotask/API.md`` §2 (auth errors that masquerade as 500), §4 (thread limit and
threshold texts that may arrive with any status) and §7 (``{"errors": [...]}`` bodies).

Messages never contain request headers or the API secret: they are built only from the method,
path, status and the server's own error texts, and ``error_for_response`` redacts any string the
caller marks as secret in case a server echoes it back.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

AUTH_KINDS = frozenset({"unknown_user", "bad_secret", "bad_integration_code", "permission"})


class AutotaskError(Exception):
    """Base class. ``kind`` is a short machine-readable label (also used in request stats)."""

    retryable: bool = False
    kind: str = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        entity: str | None = None,
        errors: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.entity = entity
        self.errors = tuple(errors)


class AutotaskAuthError(AutotaskError):
    """Credentials, integration code or permissions are wrong: retrying will not help.

    ``kind`` is one of ``unknown_user`` (zone lookup 500 "Zone information could not be
    determined"), ``bad_secret`` (401), ``bad_integration_code`` (500 naming the integration
    code / tracking identifier) or ``permission`` (403 or 500 "does not have the adequate
    permissions") — API.md §1, §2, §8.2. The sync layer pauses the partner on these.
    """

    retryable = False

    def __init__(self, message: str, *, kind: str, **kwargs: Any) -> None:
        if kind not in AUTH_KINDS:
            raise ValueError(f"unknown auth error kind {kind!r}")
        super().__init__(message, **kwargs)
        self.kind = kind


class AutotaskRequestError(AutotaskError):
    """Autotask rejected the request itself (bad query, non-queryable field, business rule,
    404/405). Sending it again gives the same answer, so it is never retried (STYLE.md: never
    retry 4xx or bad data)."""

    retryable = False
    kind = "request"


class AutotaskThrottled(AutotaskError):
    """429, or the thread-limit / threshold texts (``Itgenatr005``) under any status (API.md §4).

    ``retry_after`` is the server's Retry-After in seconds when one was given and parseable.
    """

    retryable = True
    kind = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AutotaskTransientError(AutotaskError):
    """Timeouts, connection errors, 5xx without a business ``errors`` array, HTML error pages,
    unreadable 5xx bodies, or our own limiter being unreachable: worth retrying with backoff."""

    retryable = True
    kind = "transient"

    def __init__(self, message: str, *, kind: str = "transient", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class AutotaskBudgetExhausted(AutotaskError):
    """Our share of the database's hourly request threshold is spent (see ``limits.py``).

    Raised *instead of* sending. ``retryable`` is True in the sense that the same call succeeds
    after ``resume_at``; the client does not sleep for it (it can be up to an hour away) — the
    caller reschedules (RELIABILITY.md SY-9: long waits become ``next_attempt_at``).
    """

    retryable = True
    kind = "budget"

    def __init__(self, message: str | None = None, *, resume_at: datetime, **kwargs: Any) -> None:
        super().__init__(
            message or f"Autotask request budget exhausted, resume at {resume_at.isoformat()}",
            **kwargs,
        )
        self.resume_at = resume_at


class AutotaskResponseError(AutotaskError):
    """A 2xx (or 3xx) answer we cannot trust: invalid JSON, HTML, wrong shape, a record with a
    missing or mistyped field, broken paging. Never retried: the data, not the network, is wrong,
    and silently returning part of it would corrupt the mirror."""

    retryable = False
    kind = "response"


class AutotaskOriginError(AutotaskResponseError):
    """A ``nextPageUrl`` pointed at another origin than the discovered zone. Following it would
    send our credentials there (API.md §3.3, go-autotask ``isSameOrigin``)."""

    kind = "foreign_origin"


# --- Response mapping ---------------------------------------------------------------------

_THROTTLE_MARKERS = ("threshold", "thread", "itgenatr005")
_UNKNOWN_USER_MARKERS = ("zone information could not be determined",)
_INTEGRATION_CODE_MARKERS = ("integrationcode", "integration code", "tracking identifier")
_PERMISSION_MARKERS = ("does not have the adequate permissions",)
_GATEWAY_STATUSES = frozenset({502, 503, 504})
_MAX_TEXT = 300


def parse_json(content: bytes | str) -> Any:
    """Parse a response body; JSON floats become ``Decimal`` so money keeps its exact digits."""
    return json.loads(content, parse_float=Decimal)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    Garbage gives None (the caller falls back to backoff, RELIABILITY.md SY-9); a date in the
    past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
            return None
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _error_texts(body: Any) -> tuple[str, ...]:
    """Autotask's ``{"errors": ["..."]}`` (API.md §7); ASP.NET's ``{"Message": "..."}`` too."""
    if not isinstance(body, Mapping):
        return ()
    texts: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, Mapping):
                # Defensive: some gateways send [{"message": "..."}].
                msg = item.get("message") or item.get("Message")
                if isinstance(msg, str):
                    texts.append(msg)
    return tuple(texts)


def _framework_message(body: Any) -> str | None:
    if isinstance(body, Mapping):
        for key in ("Message", "message"):
            if isinstance(body.get(key), str):
                return body[key]
    return None


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _looks_like_html(content: bytes) -> bool:
    head = content[:200].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body"))


def error_for_response(
    *,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    method: str,
    path: str,
    entity: str | None = None,
    secrets: Iterable[str] = (),
    now: Callable[[], datetime] | None = None,
) -> tuple[AutotaskError | None, Any]:
    """Classify one HTTP response: return ``(error_or_None, parsed_json_body)``.

    This is the single place status codes and error texts turn into exception types
    (STYLE.md: one ``_raise_for_response``). Order matters: throttling texts win over the
    status because Autotask sends thread-limit errors as 500 (API.md §4); auth texts win over
    "500 with errors means a business error" because bad usernames and integration codes come
    back as 500 (API.md §2).
    """
    secrets = tuple(s for s in secrets if s)
    body: Any = None
    json_ok = False
    if content:
        try:
            body = parse_json(content)
            json_ok = True
        except (ValueError, UnicodeDecodeError):
            body = None
    texts = _error_texts(body)
    framework = _framework_message(body)
    detail_parts = list(texts) or ([framework] if framework else [])
    detail = "; ".join(detail_parts)[:_MAX_TEXT]
    where = f"{method} {path}"
    base = f"Autotask {where} returned HTTP {status}"
    message = _redact(f"{base}: {detail}" if detail else base, secrets)
    lowered = " ".join(detail_parts).lower()
    common: dict[str, Any] = {"status": status, "entity": entity, "errors": texts}

    if 200 <= status < 300:
        if not json_ok:
            what = "an HTML page" if _looks_like_html(content) else "a body that is not JSON"
            return (
                AutotaskResponseError(
                    f"Autotask {where} returned {what} with HTTP {status}", **common
                ),
                None,
            )
        if texts:
            # go-autotask treats `errors` in a 2xx as failure; so do we (API.md §7).
            return AutotaskRequestError(message, **common), body
        return None, body

    if status == 429 or any(marker in lowered for marker in _THROTTLE_MARKERS):
        retry_after = parse_retry_after(
            headers.get("Retry-After"), now=now() if now is not None else None
        )
        return AutotaskThrottled(message, retry_after=retry_after, **common), body
    if any(marker in lowered for marker in _UNKNOWN_USER_MARKERS):
        return AutotaskAuthError(message, kind="unknown_user", **common), body
    if any(marker in lowered for marker in _INTEGRATION_CODE_MARKERS):
        return AutotaskAuthError(message, kind="bad_integration_code", **common), body
    if status == 403 or any(marker in lowered for marker in _PERMISSION_MARKERS):
        return AutotaskAuthError(message, kind="permission", **common), body
    if status == 401:
        return AutotaskAuthError(message, kind="bad_secret", **common), body
    if 300 <= status < 400:
        # We never follow redirects (they could carry the Secret header elsewhere).
        return AutotaskResponseError(f"{base} (redirects are not followed)", **common), body
    if status == 408:
        return AutotaskTransientError(message, kind="timeout", **common), body
    if status >= 500:
        if status in _GATEWAY_STATUSES or not texts:
            if not json_ok and content:
                what = "an HTML error page" if _looks_like_html(content) else "a non-JSON body"
                message = f"{base} with {what}"
            return AutotaskTransientError(message, kind="server_error", **common), body
        return AutotaskRequestError(message, **common), body
    # Remaining 4xx: 400, 404, 405, 409, 413, ... — the request is wrong, not the network.
    error = AutotaskRequestError(message, **common)
    if status == 404:
        error.kind = "not_found"
    return error, body
