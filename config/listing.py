"""Sorting, date ranges and CSV export for the dashboard's lists (issue 17, item 8).

- Sorting: `?sort=field` / `?sort=-field`, a whitelist per list; anything else gives the list's
  default order (never an error, never an arbitrary `order_by` from the URL). Each order ends on
  `id` so pages are stable.
- Date ranges: `?from=YYYY-MM-DD&to=YYYY-MM-DD`, both inclusive. A date that does not parse, or
  `from` after `to`, leaves the range out and gives a message the page shows (the CSV export
  answers 400 with it).
- CSV: streamed row by row (StreamingHttpResponse over a queryset `.iterator()`), so memory stays
  flat whatever the number of rows; text cells starting with = + - @ (or a tab / carriage
  return) get a leading quote so a spreadsheet never runs them as a formula (OWASP "CSV
  injection"). Numbers and dates are written as they are. The rows are read inside one
  read-only transaction (`csv_response`), so PostgreSQL streams the cursor: outside one,
  Django declares it WITH HOLD, which PostgreSQL computes to its last row before the first
  comes back (200,000 invoices: 190 ms before the download started; bench/list_scale.py). The
  price: the download holds one snapshot for its length, as the WITH HOLD cursor held its
  rows; either way one connection serves the download until it ends.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db import transaction
from django.http import StreamingHttpResponse

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Sort:
    key: str  # as in the URL: "total" or "-total"
    order_by: tuple[str, ...]

    @property
    def field(self) -> str:
        return self.key.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.key.startswith("-")


def parse_sort(value: str | None, allowed: dict[str, tuple[str, ...]], default: str) -> Sort:
    """`allowed` maps a URL name to its ascending order (without the `id` tie-breaker)."""
    key = (value or "").strip()
    if key.lstrip("-") not in allowed or key.count("-") > 1:
        key = default
    fields = allowed[key.lstrip("-")]
    if key.startswith("-"):
        order = (*(f[1:] if f.startswith("-") else f"-{f}" for f in fields), "-id")
    else:
        order = (*fields, "id")
    return Sort(key=key, order_by=order)


def sort_headers(params, sort: Sort, columns: list[tuple[str, str | None]]) -> list[dict]:
    """The table's header cells: for each (label, sort name or None) the link that sorts by it
    (the other way round when it is the current sort), keeping the current filters."""
    kept = [(k, v) for k, v in params.lists() if k not in ("sort", "page")]
    cells = []
    for label, name in columns:
        cell = {"label": label, "url": None, "direction": None}
        if name:
            if sort.field == name:
                cell["direction"] = "descending" if sort.descending else "ascending"
                target = name if sort.descending else f"-{name}"
            else:
                target = name
            query = [(k, v) for k, values in kept for v in values] + [("sort", target)]
            cell["url"] = "?" + urlencode(query)
        cells.append(cell)
    return cells


def query_without(params, *names: str) -> str:
    """The current query string without `names` (for pagination and export links)."""
    return urlencode([(k, v) for k, vs in params.lists() if k not in names for v in vs])


class CappedPaginator(Paginator):
    """A paginator told its count instead of running COUNT(*) (invoices/selectors.py
    `capped_totals` has it). `capped`: the list has more rows than `count`, and only the
    first `count` in the list's order are reachable by page; the page says so."""

    def __init__(self, object_list, per_page, *, count: int, capped: bool = False):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # the cached_property's slot
        self.capped = capped


@dataclass(frozen=True)
class DateRange:
    start: date | None = None
    end: date | None = None
    raw_from: str = ""
    raw_to: str = ""
    error: str = ""

    @property
    def active(self) -> bool:
        return self.start is not None or self.end is not None


def parse_date_range(params) -> DateRange:
    raw_from = (params.get("from") or "").strip()[:20]
    raw_to = (params.get("to") or "").strip()[:20]
    values, bad = {}, []
    for label, raw in (("From", raw_from), ("To", raw_to)):
        if not raw:
            values[label] = None
            continue
        try:
            values[label] = date.fromisoformat(raw)
        except ValueError:
            values[label] = None
            bad.append(f"{label} date “{raw}”")
    if bad:
        return DateRange(
            raw_from=raw_from,
            raw_to=raw_to,
            error=f"{' and '.join(bad)} is not a date (YYYY-MM-DD): the date range is not applied.",
        )
    start, end = values["From"], values["To"]
    if start and end and start > end:
        return DateRange(
            raw_from=raw_from,
            raw_to=raw_to,
            error="The From date is after the To date: the date range is not applied.",
        )
    return DateRange(start=start, end=end, raw_from=raw_from, raw_to=raw_to)


def safe_cell(value):
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    def write(self, value):
        return value


def csv_response(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    """A streamed CSV download: `rows` is an iterable of sequences (a queryset iterator)."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        # The queryset runs at the first row, inside the transaction (the module docstring).
        with transaction.atomic():
            try:
                for row in rows:
                    yield writer.writerow([safe_cell(v) for v in row])
            finally:
                # A download cut short (the client went away): close the server-side cursor
                # while its transaction lives, not when the generator is collected after it.
                if close := getattr(rows, "close", None):
                    close()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
