"""Autotask's wire formats: timestamps and JSON.

Every timestamp is kept in memory already formatted the way Autotask sends it
(``2025-09-05T09:47:15.227Z``). That string sorts like the instant it names, so filters can
compare stored values with a normalised filter value without parsing a single row, and a
500-row page is serialised without any per-field conversion.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")


def format_datetime(value: datetime) -> str:
    """UTC with milliseconds and ``Z``; naive datetimes are taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def format_date(value: date) -> str:
    """Date-only fields (paidDate, dueDate) still travel as a midnight timestamp."""
    return f"{value.isoformat()}T00:00:00.000Z"


def parse_datetime(value: Any) -> datetime:
    """Accept what clients send: ``2024-05-01``, ``…T00:00:00Z``, ``….000000Z``, offsets,
    and .NET's 7-digit fractions. Raises ValueError otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a date: {value!r}")
    text = _FRACTION.sub(r"\1", value.strip())
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def normalize_datetime(value: Any) -> str:
    return format_datetime(parse_datetime(value))


def normalize_date(value: Any) -> str:
    """Date-only fields keep the calendar date the client wrote: no time-zone conversion
    (Autotask drops the time part of paidDate), so ``2025-10-01T23:30:00-05:00`` → 1 Oct."""
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError(f"not a date: {value!r}")
    parse_datetime(value)  # validate the whole value
    return format_date(date.fromisoformat(value[:10]))


def now_wire() -> str:
    return format_datetime(datetime.now(UTC))


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
