"""The upsert's fast paths give exactly what the slow ones gave.

- `fingerprint` is stored (and copied to `pdf_fingerprint`): its bytes must not move.
- `_values_sql` writes some values' SQL itself instead of letting psycopg2 adapt them: the
  text must be psycopg2's, byte for byte, and everything else must still be a parameter.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import connection

from sync.upsert import _values_sql, fingerprint

pytestmark = pytest.mark.django_db


def old_fingerprint(values: dict) -> str:
    """The recipe as first shipped (sync/upsert.py before the fast path)."""

    def default(v):
        if isinstance(v, (date, datetime, Decimal)):
            return str(v)
        raise TypeError(type(v))

    blob = json.dumps(values, sort_keys=True, default=default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


TEXTS = ["", "INV-1", "Ünïcødé €", 'quote " and \\ backslash', "it's", "%s %(x)s 100%", "tab\tnl\n"]


def sample_values(rng: random.Random):
    return [
        None,
        True,
        False,
        0,
        rng.randint(-(2**40), 2**40),
        Decimal(rng.randint(-(10**9), 10**9)) / 100,
        Decimal("1E+3"),
        Decimal("0E-8"),
        Decimal("-0.00"),
        Decimal("NaN"),
        date(2024, 1, 1) + timedelta(days=rng.randint(-700_000, 2_000_000)),
        date(1, 1, 1),
        date(9999, 12, 31),
        datetime(2025, 3, 4, 5, 6, 7, rng.randint(0, 999_999), tzinfo=UTC),
        datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2025, 3, 4, 5, 6, 7),  # naive: left to psycopg2
        1.5,  # float: left to psycopg2
        rng.choice(TEXTS),
    ]


def test_fingerprint_is_byte_for_byte_the_first_recipe():
    rng = random.Random(1)
    for _ in range(300):
        values = {f"f{i}": v for i, v in enumerate(sample_values(rng)) if v == v}  # no NaN key
        values["nested"] = [Decimal("1.10"), {"d": date(2024, 2, 29)}]
        assert fingerprint(values) == old_fingerprint(values)
    invoice = {
        "autotask_invoice_number": "INV-0001",
        "number": "INV-0001",
        "invoice_date": date(2025, 1, 31),
        "due_date": date(2025, 3, 2),
        "total": Decimal("52.78"),
        "tax": Decimal("11.08"),
        "paid_in_autotask_on": None,
        "voided": False,
        "payment_term_id": 3,
        "autotask_created_at": datetime(2025, 1, 31, 8, 0, tzinfo=UTC),
    }
    assert fingerprint(invoice) == old_fingerprint(invoice)
    with pytest.raises(TypeError):
        fingerprint({"x": object()})


def test_values_sql_is_psycopg2s_text_byte_for_byte():
    rng = random.Random(2)
    rows = [tuple(sample_values(rng)) for _ in range(200)]
    rows.append(tuple(TEXTS))
    sql, params = _values_sql(rows)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        ours = raw.mogrify(sql, params)
        theirs = b", ".join(
            b"(" + b", ".join(raw.mogrify("%s", (v,)) for v in row) + b")" for row in rows
        )
    assert ours == theirs


def test_values_sql_leaves_text_and_unknown_types_to_psycopg2():
    sql, params = _values_sql([("x'); DROP TABLE t; --", 1.5, "x'); DROP TABLE t; --", "")])
    assert "DROP" not in sql
    assert sql == "(%(p0)s, %(p1)s, %(p0)s, %(p2)s)"  # one parameter per distinct text
    assert params == {"p0": "x'); DROP TABLE t; --", "p1": 1.5, "p2": ""}


def test_values_sql_round_trips_through_postgresql():
    rows = [
        (
            5,
            -7,
            True,
            None,
            Decimal("-12.345"),
            date(2024, 2, 29),
            datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
            "it's 100%",
        )
    ]
    sql, params = _values_sql(rows)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM (VALUES {sql}) AS v", params)
        assert cursor.fetchall() == rows
