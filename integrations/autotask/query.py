"""Query bodies for ``POST /V1.0/{Entity}/query`` (API.md §3.2).

    Query(
        filters=[Q.eq("isVoided", False), Q.or_(Q.exist("paidDate"), Q.gte("id", 100))],
        include_fields=["id", "invoiceNumber"],
        max_records=500,
    ).to_body()

Top-level filters are ANDed; ``Q.and_``/``Q.or_`` nest. Values are serialised here, once:
booleans stay JSON booleans (Autotask rejects anything else, AT-help "Making basic query
calls"), aware datetimes become UTC ``YYYY-MM-DDTHH:MM:SS.fffZ``, dates ``YYYY-MM-DD``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

MAX_PAGE_SIZE = 500  # MaxRecords 1-500 (AT-help Advanced query features)
MAX_IN_VALUES = 500  # "Queries are limited to 500 or fewer 'OR' conditions" (API.md §3.2)
DEFAULT_IN_BATCH = 400  # django-autotask's batch_query_size after hitting the 500 limit

_VALUE_OPS = frozenset(
    {"eq", "noteq", "gt", "gte", "lt", "lte", "beginsWith", "endsWith", "contains"}
)
_LIST_OPS = frozenset({"in", "notIn"})
_NULL_OPS = frozenset({"exist", "notExist"})
_GROUP_OPS = frozenset({"and", "or"})

# Autotask documents no behaviour for "filter": [] (UNVERIFIED), so an empty filter becomes
# this catch-all, as in the apigrate README.
CATCH_ALL = {"op": "gte", "field": "id", "value": 0}


def format_datetime(value: datetime) -> str:
    """UTC with milliseconds and ``Z`` — the format Autotask itself returns (API.md §3.4)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_date(value: date) -> str:
    return value.isoformat()


def serialize_value(value: Any) -> Any:
    """One filter value as JSON. ``None`` is refused: use ``exist``/``notExist``."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool | str):
        return value
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_date(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot filter on {value!r}")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return value
    if value is None:
        raise ValueError("filter value None: use Q.exist/Q.not_exist for null checks")
    raise TypeError(f"unsupported filter value type {type(value).__name__}")


@dataclass(frozen=True)
class Condition:
    """One filter item: ``{"op", "field", "value", "udf", "items"}``."""

    op: str
    field: str | None = None
    value: Any = None
    udf: bool = False
    items: tuple[Condition, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.op in _GROUP_OPS:
            return {"op": self.op, "items": [item.to_json() for item in self.items]}
        body: dict[str, Any] = {"op": self.op, "field": self.field}
        if self.op in _LIST_OPS:
            body["value"] = [serialize_value(v) for v in self.value]
        elif self.op in _VALUE_OPS:
            body["value"] = serialize_value(self.value)
        if self.udf:
            body["udf"] = True
        return body

    def walk(self) -> Iterable[Condition]:
        yield self
        for item in self.items:
            yield from item.walk()


class Q:
    """Condition constructors named after the Autotask operators (API.md §3.2)."""

    @staticmethod
    def _cmp(op: str, field_name: str, value: Any, udf: bool) -> Condition:
        if not field_name:
            raise ValueError("field name is required")
        serialize_value(value)  # fail at construction, not at send time
        return Condition(op=op, field=field_name, value=value, udf=udf)

    @staticmethod
    def eq(field_name: str, value: Any, *, udf: bool = False) -> Condition:
        return Q._cmp("eq", field_name, value, udf)

    @staticmethod
    def noteq(field_name: str, value: Any, *, udf: bool = False) -> Condition:
        return Q._cmp("noteq", field_name, value, udf)

    @staticmethod
    def gt(field_name: str, value: Any, *, udf: bool = False) -> Condition:
        return Q._cmp("gt", field_name, value, udf)

    @staticmethod
    def gte(field_name: str, value: Any, *, udf: bool = False) -> Condition:
        return Q._cmp("gte", field_name, value, udf)

    @staticmethod
    def lt(field_name: str, value: Any, *, udf: bool = False) -> Condition:
        return Q._cmp("lt", field_name, value, udf)

    @staticmethod
    def lte(field_name: str, value: Any, *, udf: bool = False) -> Condition:
        return Q._cmp("lte", field_name, value, udf)

    @staticmethod
    def begins_with(field_name: str, value: str, *, udf: bool = False) -> Condition:
        return Q._cmp("beginsWith", field_name, value, udf)

    @staticmethod
    def ends_with(field_name: str, value: str, *, udf: bool = False) -> Condition:
        return Q._cmp("endsWith", field_name, value, udf)

    @staticmethod
    def contains(field_name: str, value: str, *, udf: bool = False) -> Condition:
        return Q._cmp("contains", field_name, value, udf)

    @staticmethod
    def exist(field_name: str, *, udf: bool = False) -> Condition:
        return Condition(op="exist", field=field_name, udf=udf)

    @staticmethod
    def not_exist(field_name: str, *, udf: bool = False) -> Condition:
        return Condition(op="notExist", field=field_name, udf=udf)

    @staticmethod
    def _list(op: str, field_name: str, values: Iterable[Any], udf: bool) -> Condition:
        values = tuple(values)
        if not values:
            raise ValueError(f"{op} needs at least one value")
        if len(values) > MAX_IN_VALUES:
            raise ValueError(
                f"{op} with {len(values)} values exceeds Autotask's {MAX_IN_VALUES} OR-condition "
                "limit: split into batches (AutotaskClient.iter_by_ids does)"
            )
        for v in values:
            serialize_value(v)
        return Condition(op=op, field=field_name, value=values, udf=udf)

    @staticmethod
    def in_(field_name: str, values: Iterable[Any], *, udf: bool = False) -> Condition:
        return Q._list("in", field_name, values, udf)

    @staticmethod
    def not_in(field_name: str, values: Iterable[Any], *, udf: bool = False) -> Condition:
        return Q._list("notIn", field_name, values, udf)

    @staticmethod
    def and_(*items: Condition) -> Condition:
        if not items:
            raise ValueError("and_ needs at least one condition")
        return Condition(op="and", items=tuple(items))

    @staticmethod
    def or_(*items: Condition) -> Condition:
        if not items:
            raise ValueError("or_ needs at least one condition")
        return Condition(op="or", items=tuple(items))

    # Autotask's own spellings, for readers coming from the docs.
    notEq = noteq
    beginsWith = begins_with
    endsWith = ends_with
    notExist = not_exist
    notIn = not_in


@dataclass(frozen=True)
class Query:
    """A query: ANDed ``filters``, optional ``include_fields``, page size ``max_records``."""

    filters: Sequence[Condition] = field(default_factory=tuple)
    include_fields: Sequence[str] = field(default_factory=tuple)
    max_records: int = MAX_PAGE_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(self.filters))
        object.__setattr__(self, "include_fields", tuple(self.include_fields))
        if not 1 <= self.max_records <= MAX_PAGE_SIZE:
            raise ValueError(f"max_records must be 1..{MAX_PAGE_SIZE}, got {self.max_records}")
        for condition in self.filters:
            if not isinstance(condition, Condition):
                raise TypeError(f"filters must be Condition objects, got {condition!r}")
        udfs = sum(1 for c in self.filters for node in c.walk() if node.udf)
        if udfs > 1:
            # AT-help: "You can only query by one user-defined field at a time".
            raise ValueError("Autotask allows only one user-defined field per query")

    def and_filter(self, *conditions: Condition) -> Query:
        return replace(self, filters=(*self.filters, *conditions))

    def with_required_fields(self, required: Iterable[str]) -> Query:
        """If IncludeFields is set, make sure fields the record parser needs are in it (with
        more than 500 rows ``id`` is mandatory anyway — AT-help Advanced query features)."""
        if not self.include_fields:
            return self
        missing = [
            name
            for name in required
            if name.lower() not in {f.lower() for f in self.include_fields}
        ]
        if not missing:
            return self
        return replace(self, include_fields=(*self.include_fields, *missing))

    def filter_json(self) -> list[dict[str, Any]]:
        if not self.filters:
            return [dict(CATCH_ALL)]
        return [condition.to_json() for condition in self.filters]

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"MaxRecords": self.max_records}
        if self.include_fields:
            body["IncludeFields"] = list(self.include_fields)
        body["filter"] = self.filter_json()
        return body

    def to_count_body(self) -> dict[str, Any]:
        """``query/count`` takes the filter only (MaxRecords/IncludeFields are meaningless)."""
        return {"filter": self.filter_json()}


def as_query(query: Query | Sequence[Condition] | None) -> Query:
    if query is None:
        return Query()
    if isinstance(query, Query):
        return query
    return Query(filters=tuple(query))
