"""The processor's event body (documented in README "Payments: processor webhooks").

```json
{"type": "payment.succeeded" | "payment.refunded" | "payment.deleted",
 "data": {"payment_id": "pay_123",          # the processor's payment id (required)
          "invoice_id": 42,                  # our invoice id, as in the API (or:)
          "invoice_number": "INV-1001",      # the number shown to the partner
          "amount": "12.34",                 # string or number, > 0, at most 2 decimals
          "currency": "USD",                 # optional; must match the invoice
          "method": "card" | "ach" | "other",# optional, default "other"
          "occurred_at": "2026-01-02T03:04:05Z",  # optional, default: the signed timestamp
          "version": 3}}                     # optional int; orders events of one payment
```

`invoice_id` wins when both are given. A refund is a full refund of the payment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime

from .models import PaymentMethod, PaymentStatus

EVENT_TYPES = {
    "payment.succeeded": PaymentStatus.SUCCEEDED,
    "payment.refunded": PaymentStatus.REFUNDED,
    "payment.deleted": PaymentStatus.DELETED,
}
MAX_AMOUNT = Decimal("999999999999.99")


class EventInvalid(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PaymentEvent:
    type: str
    status: str
    payment_id: str
    invoice_id: int | None
    invoice_number: str
    amount: Decimal
    currency: str
    method: str
    occurred_at: datetime | None
    version: int


def _amount(value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise EventInvalid("malformed", "data.amount must be a decimal string or a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise EventInvalid("malformed", "data.amount is not a number") from exc
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise EventInvalid("malformed", "data.amount must be positive")
    if amount != amount.quantize(Decimal("0.01")):
        raise EventInvalid("malformed", "data.amount has more than 2 decimals")
    return amount.quantize(Decimal("0.01"))


MAX_ID = 2**63 - 1  # the largest id PostgreSQL stores (bigint)


def _check_strings(doc) -> None:
    """Every string (keys too) must be storable text: no NUL (PostgreSQL text refuses it) and
    no lone surrogate (not UTF-8). Iterative: the depth is bounded by the body size only."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise EventInvalid("malformed", "the body contains a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise EventInvalid("malformed", "the body contains a lone surrogate") from exc


def _occurred_at(raw) -> datetime:
    try:
        value = parse_datetime(raw) if isinstance(raw, str) else None
    except ValueError:  # well-formed but impossible, e.g. 2026-02-30
        value = None
    if value is None or value.tzinfo is None:
        raise EventInvalid("malformed", "data.occurred_at must be an ISO 8601 time with zone")
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:  # year 1 at +01:00 is year 0 in UTC
        raise EventInvalid("malformed", "data.occurred_at is out of range") from exc
    if not 1970 <= value.year <= 9998:
        raise EventInvalid("malformed", "data.occurred_at is out of range")
    return value


def event_type_of(body: bytes) -> str:
    """The `type` of a body, for labelling an ignored or invalid delivery ("" if none)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    value = doc.get("type") if isinstance(doc, dict) else None
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "")[:60].encode("utf-8", errors="replace").decode()


def parse_event(body: bytes) -> PaymentEvent:
    """Parse and check an event body; raise EventInvalid with a reason for ops ("unknown_type"
    for a well-formed event of a type we do not handle: acknowledged and ignored)."""
    if b"\x00" in body:
        raise EventInvalid("malformed", "the body contains a NUL byte")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EventInvalid("malformed", "body is not JSON") from exc
    if not isinstance(doc, dict):
        raise EventInvalid("malformed", "body is not a JSON object")
    _check_strings(doc)
    event_type = doc.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise EventInvalid("malformed", "type must be a non-empty string")
    if event_type not in EVENT_TYPES:
        raise EventInvalid("unknown_type", f"unknown event type {event_type[:60]!r}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventInvalid("malformed", "data must be an object")
    payment_id = data.get("payment_id")
    if not isinstance(payment_id, str) or not payment_id.strip() or len(payment_id) > 255:
        raise EventInvalid("malformed", "data.payment_id must be a non-empty string")
    invoice_id = data.get("invoice_id")
    if invoice_id is not None:
        if isinstance(invoice_id, str) and invoice_id.isdigit():
            invoice_id = int(invoice_id)
        if (
            isinstance(invoice_id, bool)
            or not isinstance(invoice_id, int)
            or not 0 < invoice_id <= MAX_ID
        ):
            raise EventInvalid("malformed", "data.invoice_id must be a positive integer")
    invoice_number = data.get("invoice_number") or ""
    if not isinstance(invoice_number, str) or len(invoice_number) > 100:
        raise EventInvalid("malformed", "data.invoice_number must be a string")
    if invoice_id is None and not invoice_number.strip():
        raise EventInvalid("malformed", "data.invoice_id or data.invoice_number is required")
    amount = _amount(data.get("amount"))
    currency = data.get("currency") or ""
    if not isinstance(currency, str) or (currency and len(currency) != 3):
        raise EventInvalid("malformed", "data.currency must be a 3-letter code")
    method = data.get("method") or PaymentMethod.OTHER
    if not isinstance(method, str) or method not in PaymentMethod.values:
        raise EventInvalid("malformed", "data.method must be card, ach or other")
    occurred_at = None
    if data.get("occurred_at") is not None:
        occurred_at = _occurred_at(data["occurred_at"])
    version = data.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**62:
        raise EventInvalid("malformed", "data.version must be a non-negative integer")
    return PaymentEvent(
        type=event_type,
        status=EVENT_TYPES[event_type],
        payment_id=payment_id.strip(),
        invoice_id=invoice_id,
        invoice_number=invoice_number.strip(),
        amount=amount,
        currency=currency.upper(),
        method=method,
        occurred_at=occurred_at,
        version=version,
    )
