"""The query language: filter compiler, IncludeFields, MaxRecords and keyset paging.

A query body is compiled once into a plain Python predicate over stored row tuples, so a page
costs one pass over candidate rows and no per-row interpretation of the filter tree. Top-level
``id gt/gte`` conditions (the paging idiom Autotask recommends) and the paging token become a
bisect on the sorted id list instead of a scan.

Rules enforced (API.md §3.2): top-level items are ANDed, ``and``/``or`` groups nest; keys are
case-insensitive; operators eq, noteq, gt, gte, lt, lte, beginsWith, endsWith, contains,
exist, notExist, in, notIn; at most 500 OR conditions (values of in/notIn lists plus items of
``or`` groups); one UDF per query; non-queryable fields and unknown fields are errors;
boolean fields accept only JSON booleans. String comparisons ignore case (SQL Server's
collation does); a NULL column matches only ``notExist`` (SQL semantics, also for noteq/notIn).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sandbox import wire
from sandbox.errors import OR_LIMIT, business_error
from sandbox.schema import INTEGER_TYPES, NUMBER_TYPES, Entity

MAX_PAGE = 500
MAX_OR_CONDITIONS = 500

Predicate = Callable[[tuple], bool]

_OPS = {
    op.lower(): op
    for op in (
        "eq", "noteq", "gt", "gte", "lt", "lte", "beginsWith", "endsWith", "contains",
        "exist", "notExist", "in", "notIn", "and", "or",
    )
}  # fmt: skip


@dataclass(frozen=True)
class CompiledQuery:
    predicate: Predicate | None  # None = every row matches
    floor_id: int | None  # rows must have id > floor_id (from top-level id gt/gte)
    max_records: int
    include: tuple[int, ...] | None  # column indexes, id first; None = every field
    digest: str  # identifies the query for paging tokens


class _State:
    def __init__(self) -> None:
        self.or_conditions = 0
        self.udfs: set[str] = set()


def compile_query(body: Any, entity: Entity, *, allow_empty_filter: bool = True) -> CompiledQuery:
    if not isinstance(body, dict):
        raise business_error("Invalid query syntax. The query body must be a JSON object.")
    keys = {str(k).lower(): v for k, v in body.items()}
    max_records = _max_records(keys.get("maxrecords"))
    include = _include(keys.get("includefields"), entity)
    items = keys.get("filter")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise business_error("Invalid query syntax. 'filter' must be an array.")
    if not items and not allow_empty_filter:
        raise business_error("Invalid query syntax. At least one filter condition is required.")

    state = _State()
    floor_id: int | None = None
    predicates: list[Predicate] = []
    for item in items:
        bound = _id_floor(item)
        if bound is not None:
            floor_id = bound if floor_id is None else max(floor_id, bound)
        pred = _compile(item, entity, state)
        if bound is None and pred is not _ALWAYS:
            predicates.append(pred)
    if state.or_conditions > MAX_OR_CONDITIONS:
        raise business_error(OR_LIMIT)
    if len(state.udfs) > 1:
        raise business_error("You can only query by one user-defined field at a time.")
    return CompiledQuery(
        predicate=_all(predicates) if predicates else None,
        floor_id=floor_id,
        max_records=max_records,
        include=include,
        digest=digest(body),
    )


def digest(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _max_records(value: Any) -> int:
    if value is None:
        return MAX_PAGE
    if isinstance(value, bool) or not isinstance(value, int):
        raise business_error("Invalid query syntax. MaxRecords must be an integer.")
    if not 1 <= value <= MAX_PAGE:
        raise business_error(f"MaxRecords must be between 1 and {MAX_PAGE}. Got {value}.")
    return value


def _include(value: Any, entity: Entity) -> tuple[int, ...] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise business_error("Invalid query syntax. IncludeFields must be an array of names.")
    wanted = {0}
    for name in value:
        field = entity.field(name)
        if field is None:
            raise business_error(f"Unable to find {name} in the {entity.name}")
        wanted.add(entity.index[field.name])
    return tuple(sorted(wanted))


def _id_floor(item: Any) -> int | None:
    """``{"op": "gt"|"gte", "field": "id", "value": N}`` at top level → exclusive floor."""
    if not isinstance(item, dict):
        return None
    keys = {str(k).lower(): v for k, v in item.items()}
    op = str(keys.get("op", "")).lower()
    value = keys.get("value")
    if str(keys.get("field", "")).lower() != "id" or keys.get("udf") is True:
        return None
    if op not in ("gt", "gte") or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    if isinstance(value, float) and value != number:
        return None
    return number if op == "gt" else number - 1


def _ALWAYS(row: tuple) -> bool:
    return True


def _all(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda row: a(row) and b(row)
    return lambda row: all(p(row) for p in preds)


def _any(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    return lambda row: any(p(row) for p in preds)


def _compile(item: Any, entity: Entity, state: _State) -> Predicate:
    if not isinstance(item, dict):
        raise business_error("Invalid query syntax. Each filter item must be an object.")
    keys = {str(k).lower(): v for k, v in item.items()}
    op = _OPS.get(str(keys.get("op", "")).lower())
    if op is None:
        raise business_error(f"Invalid query syntax. Unknown operator '{keys.get('op')}'.")
    if op in ("and", "or"):
        children = keys.get("items")
        if not isinstance(children, list) or not children:
            raise business_error(f"Invalid query syntax. '{op}' needs a non-empty 'items' array.")
        if op == "or":
            state.or_conditions += len(children)
        preds = [_compile(child, entity, state) for child in children]
        return _all(preds) if op == "and" else _any(preds)
    return _leaf(op, keys, entity, state)


def _leaf(op: str, keys: dict, entity: Entity, state: _State) -> Predicate:
    name = keys.get("field")
    if not isinstance(name, str) or not name:
        raise business_error("Invalid query syntax. A filter condition needs a 'field'.")
    if keys.get("udf") is True:
        getter, data_type, label = _udf_getter(name, entity, state)
    else:
        field = entity.field(name)
        if field is None:
            raise business_error(f"Unable to find {name} in the {entity.name}")
        if not field.queryable:
            raise business_error(f"The field {field.name} is not queryable in {entity.name}.")
        getter, data_type, label = itemgetter(entity.index[field.name]), field.data_type, field.name
        if field.name == "id" and op == "exist":
            return _ALWAYS

    if op == "exist":
        return lambda row: getter(row) is not None
    if op == "notExist":
        return lambda row: getter(row) is None

    value = keys.get("value")
    textual = data_type == "string" or op in ("beginsWith", "endsWith", "contains")
    if textual:
        getter = _lowered(getter)
    if op in ("in", "notIn"):
        if not isinstance(value, list):
            raise business_error(f"Invalid query syntax. '{op}' needs an array value.")
        state.or_conditions += len(value)
        values = frozenset(_coerce(v, data_type, label, textual) for v in value)
        if op == "in":
            return lambda row: getter(row) in values
        return lambda row: (v := getter(row)) is not None and v not in values

    operand = _coerce(value, data_type, label, textual)
    if op == "eq":
        return lambda row: getter(row) == operand
    if op == "noteq":
        return lambda row: (v := getter(row)) is not None and v != operand
    if op == "gt":
        return lambda row: (v := getter(row)) is not None and v > operand
    if op == "gte":
        return lambda row: (v := getter(row)) is not None and v >= operand
    if op == "lt":
        return lambda row: (v := getter(row)) is not None and v < operand
    if op == "lte":
        return lambda row: (v := getter(row)) is not None and v <= operand
    if op == "beginsWith":
        return lambda row: (v := getter(row)) is not None and v.startswith(operand)
    if op == "endsWith":
        return lambda row: (v := getter(row)) is not None and v.endswith(operand)
    return lambda row: (v := getter(row)) is not None and operand in v  # contains


def _lowered(getter: Callable[[tuple], Any]) -> Callable[[tuple], Any]:
    def get(row: tuple) -> Any:
        value = getter(row)
        if value is None:
            return None
        return value.lower() if isinstance(value, str) else str(value).lower()

    return get


def _udf_getter(name: str, entity: Entity, state: _State):
    wanted = name.lower()
    definition = next((u for u in entity.udfs if u.name.lower() == wanted), None)
    if definition is None:
        raise business_error(f"Unable to find {name} in the {entity.name} user-defined fields")
    if not definition.queryable:
        raise business_error(f"The user-defined field {definition.name} is not queryable.")
    state.udfs.add(wanted)

    def get(row: tuple) -> Any:
        for udf in row[-1]:
            if udf["name"].lower() == wanted:
                return udf["value"]
        return None

    return get, "string", definition.name


def _coerce(value: Any, data_type: str, label: str, textual: bool) -> Any:
    """The filter value in the stored representation of the field (see module docstring)."""
    if data_type == "boolean":
        if not isinstance(value, bool):
            raise business_error(
                f"Invalid value for field {label}: boolean fields require true or false "
                f"(got {json.dumps(value)})."
            )
        return str(value).lower() if textual else value
    if value is None or isinstance(value, (dict, list)):
        raise business_error(f"Invalid value for field {label}: {json.dumps(value)}.")
    if textual:
        return str(value).lower()
    try:
        if data_type in INTEGER_TYPES:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if data_type in NUMBER_TYPES:
            return float(value)
        if data_type == "datetime":
            return wire.normalize_datetime(value)
    except (TypeError, ValueError):
        raise business_error(
            f"Invalid value for field {label} ({data_type}): {json.dumps(value)}."
        ) from None
    return value


# -- paging -------------------------------------------------------------------------------


def encode_token(after: int | None, query_digest: str) -> str:
    raw = json.dumps({"a": after, "q": query_digest}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query_digest: str) -> int | None:
    """The id the next page starts after. Refuses a token made for a different query: the
    client must re-send the original body (POST) or search (GET) with the next page URL."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        after, token_digest = data["a"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise business_error("Invalid paging parameter.") from None
    if token_digest != query_digest:
        raise business_error(
            "Invalid paging request: the query does not match the one the paging URL was "
            "issued for. Send the same query body with the next page URL."
        )
    return after


@dataclass(frozen=True)
class Page:
    rows: list[tuple]
    next_after: int | None  # set when there is a next page
    prev_after: int | None
    has_prev: bool


def select_page(ids: list[int], rows: list[tuple], q: CompiledQuery, after: int | None) -> Page:
    pred, limit = q.predicate, q.max_records
    floor_pos = 0 if q.floor_id is None else bisect_right(ids, q.floor_id)
    start = floor_pos if after is None else max(floor_pos, bisect_right(ids, after))
    total = len(rows)
    if pred is None:
        chunk = rows[start : start + limit]
        has_next = start + limit < total
    else:
        chunk = []
        has_next = False
        for pos in range(start, total):
            row = rows[pos]
            if pred(row):
                if len(chunk) == limit:
                    has_next = True
                    break
                chunk.append(row)
    next_after = chunk[-1][0] if has_next else None

    prev_after, has_prev = None, False
    if after is not None:
        first = None
        if pred is None:
            if start > floor_pos:
                first = max(floor_pos, start - limit)
        else:
            found, pos = 0, start - 1
            while pos >= floor_pos and found < limit:
                if pred(rows[pos]):
                    found += 1
                    first = pos
                pos -= 1
        if first is not None:
            has_prev = True
            prev_after = ids[first - 1] if first > 0 else None
    return Page(chunk, next_after, prev_after, has_prev)


def _scramble_key(row: tuple) -> int:
    # A fixed permutation of the ids (multiplicative hash): same order on every request.
    return (row[0] * 2654435761) & 0xFFFFFFFF


def select_page_scrambled(
    ids: list[int], rows: list[tuple], q: CompiledQuery, offset: int | None
) -> Page:
    """`select_page` for switch `result_order="scrambled"`: the matching rows in an order
    unrelated to the id, paged by position (the token's `after` is the offset)."""
    floor_pos = 0 if q.floor_id is None else bisect_right(ids, q.floor_id)
    pred = q.predicate
    matching = [row for row in rows[floor_pos:] if pred is None or pred(row)]
    matching.sort(key=_scramble_key)
    start = offset or 0
    chunk = matching[start : start + q.max_records]
    end = start + len(chunk)
    return Page(
        chunk,
        end if end < len(matching) else None,
        max(0, start - q.max_records) if start else None,
        bool(start),
    )


def count(ids: list[int], rows: list[tuple], q: CompiledQuery) -> int:
    start = 0 if q.floor_id is None else bisect_right(ids, q.floor_id)
    if q.predicate is None:
        return len(rows) - start
    pred = q.predicate
    return sum(1 for pos in range(start, len(rows)) if pred(rows[pos]))


def render(rows: list[tuple], entity: Entity, include: tuple[int, ...] | None) -> list[dict]:
    names = entity.names
    if include is None:
        return [dict(zip(names, row, strict=True)) for row in rows]
    picked = [names[i] for i in include]
    out = []
    for row in rows:
        item = {name: row[i] for name, i in zip(picked, include, strict=True)}
        item["userDefinedFields"] = []
        out.append(item)
    return out
