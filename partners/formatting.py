"""How money and times read on the dashboard (issue 17): one place, used by templates (the
`money` and `when` filters, built in to every template) and by Python code that writes text
for partners (e.g. "available tomorrow at 01:18 CET").

Money goes through Babel (CLDR data): the currency's symbol, its number of decimals and the
grouping of the locale (`PAYSYNC_MONEY_LOCALE`, en_US by default: "$2,013.62", "€2,013.62",
"CA$2,013.62", "¥2,014"). Times are shown in the active time zone (the partner's, set per
request by partners.middleware) with the zone's abbreviation, and as "today" / "tomorrow" /
"yesterday" when they fall on those days there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency, format_decimal
from django.conf import settings
from django.utils import timezone


def _locale() -> Locale:
    return _parsed_locale(getattr(settings, "PAYSYNC_MONEY_LOCALE", "en_US"))


@lru_cache(maxsize=8)
def _parsed_locale(name: str) -> Locale:
    # Parsed once: Babel parses a locale given by name on every call, three quarters of the
    # cost of formatting an amount (100 amounts on a list page; issue 19).
    return Locale.parse(name)


def format_money(amount, currency: str | None = "") -> str:
    """'$2,013.62' for (2013.62, 'USD'); '2,013.62' without a currency; '—' for None."""
    if amount is None or amount == "":
        return "—"
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    code = (currency or "").strip().upper()
    if code:
        try:
            return format_currency(value, code, locale=_locale())
        except Exception:  # an unknown code from Autotask: keep the number, show the code
            return f"{format_decimal(value, format='#,##0.00', locale=_locale())} {code}"
    return format_decimal(value, format="#,##0.00", locale=_locale())


def day_word(moment: datetime, now: datetime | None = None) -> str:
    """'today', 'tomorrow', 'yesterday' or the date (YYYY-MM-DD), in the active time zone."""
    now = timezone.localtime(now or timezone.now())
    local = timezone.localtime(moment)
    delta = (local.date() - now.date()).days
    if delta == 0:
        return "today"
    if delta == 1:
        return "tomorrow"
    if delta == -1:
        return "yesterday"
    return local.strftime("%Y-%m-%d")


def format_when(moment: datetime | None, now: datetime | None = None) -> str:
    """'today 14:05 CET', 'tomorrow 01:18 CET', '2026-11-30 09:12 CET'; '—' for None."""
    if moment is None:
        return "—"
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    local = timezone.localtime(moment)
    return f"{day_word(moment, now)} {local:%H:%M} {local.tzname() or ''}".rstrip()


def format_wait_until(moment: datetime, now: datetime | None = None) -> str:
    """'tomorrow at 01:18 CET' / 'today at 15:04 UTC'."""
    local = timezone.localtime(moment)
    return f"{day_word(moment, now)} at {local:%H:%M} {local.tzname() or ''}".rstrip()


def in_hours(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
