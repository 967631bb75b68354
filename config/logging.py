"""One log format for every process: text lines in development, JSON lines in production,
each carrying the request id (or the Celery task id), and a filter that masks secrets.

The masking filter is a last line of defence, not the plan: code never logs credentials. It
masks (a) every value registered with `register_secret()` (decrypted Autotask secrets, webhook
secrets, encryption keys), including their base64 and URL-encoded forms, and (b) anything that
looks like a secret: Fernet tokens, `whsec_` secrets, and `secret=`/`password=`/`Secret:` pairs.
"""

from __future__ import annotations

import base64
import contextvars
import logging
import re
import threading
import uuid
from urllib.parse import quote

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

MASK = "[REDACTED]"
_PATTERNS = [
    re.compile(r"gAAAAA[A-Za-z0-9_\-=]{20,}"),  # Fernet tokens
    re.compile(r"whsec_[A-Za-z0-9+/=]{8,}"),  # Standard Webhooks secrets
    re.compile(
        r"(?i)((?:secret|password|passwd|api[_-]?key|token|authorization)[\"']?\s*[:=]\s*[\"']?)"
        r"([^\s\"',;}]+)"
    ),
]
_KEY = 4  # every registered value is at least this long; they are indexed by their first 4
_registered: set[str] = set()
# First _KEY characters -> the registered values starting with them, longest first. A worker
# serving thousands of partners registers thousands of secrets: a record is scanned once, one
# dictionary look-up per position, whatever their number (no per-record sort or per-value scan).
_by_prefix: dict[str, tuple[str, ...]] = {}
_registered_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask this exact value (and its common encodings) in every later log record."""
    if not value or len(value) < _KEY or value in _registered:
        return  # registered already (every run decrypts its partner's secrets again)
    forms = {value, quote(value, safe=""), base64.b64encode(value.encode()).decode()}
    with _registered_lock:
        new = forms - _registered
        if not new:
            return
        _registered.update(new)
        for form in new:
            key = form[:_KEY]
            same = {*_by_prefix.get(key, ()), form}
            _by_prefix[key] = tuple(sorted(same, key=len, reverse=True))


def _mask_registered(text: str) -> str:
    """Each registered value in `text` replaced by MASK, the longest one where several start
    at the same place, scanning left to right (a masked span is not looked into again)."""
    index = _by_prefix  # read without the lock: a dict look-up is atomic
    if not index:
        return text
    hits = [i for i in range(len(text) - _KEY + 1) if text[i : i + _KEY] in index]
    parts, start = [], 0
    for i in hits:
        if i < start:  # inside a span masked already
            continue
        for value in index.get(text[i : i + _KEY], ()):
            if text.startswith(value, i):
                parts += [text[start:i], MASK]
                start = i + len(value)
                break
    if not parts:
        return text
    parts.append(text[start:])
    return "".join(parts)


def mask_secrets(text: str) -> str:
    text = _mask_registered(text)
    for pattern in _PATTERNS:
        if pattern.groups == 2:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


class SecretMaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        masked = mask_secrets(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        record.msg, record.args = masked, None
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RequestIdMiddleware:
    """Takes X-Request-ID from the proxy when it looks sane, else makes one; echoes it back."""

    _valid = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if self._valid.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        request.request_id = rid
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = rid
        return response


def build_logging_config(*, level: str = "INFO", fmt: str = "text") -> dict:
    formatter = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "config.logging.RequestIdFilter"},
            "mask_secrets": {"()": "config.logging.SecretMaskingFilter"},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id", "mask_secrets"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": {"level": level, "propagate": True},
            "celery": {"level": level, "propagate": True},
            # urllib3 at DEBUG would print request lines; our client logs what matters itself.
            "urllib3": {"level": "WARNING", "propagate": True},
        },
    }
