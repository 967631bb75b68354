"""The upsert's fast paths give exactly what the slow ones gave.

- `fingerprint` is stored (and copied to `pdf_fingerprint`): its bytes must not move.
- `_insert_new` sends a page as one array literal per column, unnested (`_as_arrays`): every
  value must come back as it went in, and rows must be stored exactly as the plain
  `INSERT … VALUES` (psycopg2 adapting each value) stores them.
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone as dj_timezone
from psycopg2 import errors as pg_errors

from customers.models import Customer
from invoices.models import Invoice
from sync import upsert
from sync.upsert import _as_arrays, _insert_new, fingerprint

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


TRICKY_TEXTS = [
    *TEXTS,
    "NULL",
    "null",
    "{a,b}",
    "a,b",
    " lead and trail ",
    "back\\slash\\",
    '\\"',
    "'single'",
    "ünïcødé 😀",
    "\r\n",
]


def test_arrays_round_trip_every_kind_of_value():
    rng = random.Random(2)
    columns = {
        "text": [*TRICKY_TEXTS, None],
        "bigint": [0, -1, 2**62, -(2**62), None, *[rng.randint(-(2**40), 2**40) for _ in range(9)]],
        "numeric": [
            Decimal("0"),
            Decimal("-0.00"),
            Decimal("-12.345"),
            Decimal("1E+3"),
            Decimal("0E-8"),
            Decimal("123456789012.34"),
            7,
            None,
        ],
        "date": [date(1, 1, 1), date(9999, 12, 31), date(2024, 2, 29), None],
        "timestamp with time zone": [
            datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
            datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            datetime(1, 1, 2, tzinfo=UTC),
            None,
        ],
        "boolean": [True, False, None],
    }
    with connection.cursor() as cursor:
        for sql_type, values in columns.items():
            (array,) = _as_arrays([(v,) for v in values], [sql_type])
            cursor.execute(f"SELECT * FROM unnest(%s::{sql_type}[])", [array])
            got = [row[0] for row in cursor.fetchall()]
            assert got == values, sql_type
            assert [type(g) for g in got if g is not None and type(g) is not int] == [
                type(v) for v in values if v is not None and type(v) is not int
            ] or sql_type == "numeric"


@pytest.mark.parametrize(
    "value, sql_type",
    [
        (1.5, "numeric"),  # float
        (Decimal("NaN"), "numeric"),
        (datetime(2025, 3, 4, 5, 6, 7), "timestamp with time zone"),  # naive
        (datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC), "date"),
        (True, "bigint"),
        (5, "varchar"),
        ("t", "boolean"),
        ("x", "jsonb"),  # a column type not written here
    ],
)
def test_values_not_written_as_arrays_are_left_to_psycopg2(value, sql_type):
    assert _as_arrays([(value,)], [sql_type]) is None


def invoice_rows(partner, customer, first_id: int, n: int) -> list[dict]:
    rng = random.Random(7)  # the same values whatever the ids
    rows = []
    for i in range(n):
        text = rng.choice(TRICKY_TEXTS)
        rows.append(
            {
                "partner_id": partner.pk,
                "autotask_id": first_id + i,
                "autotask_fingerprint": f"{i:064x}",
                "autotask_invoice_number": text,
                "number": text or str(i),
                "invoice_date": date(2025, 1, 1) + timedelta(days=i),
                "due_date": None if i % 3 == 0 else date(2025, 2, 1) + timedelta(days=i),
                "total": Decimal(rng.randint(-(10**6), 10**8)) / 100,
                "tax": Decimal("1.005") if i % 4 == 0 else Decimal(i),  # 1.005 is rounded
                "paid_in_autotask_on": None if i % 2 else date(2025, 3, 1),
                "voided": i % 5 == 0,
                "payment_term_id": None if i % 7 == 0 else i,
                "autotask_created_at": datetime(2025, 1, 1, 8, tzinfo=UTC) + timedelta(hours=i),
                "source": "autotask",
                "customer_id": customer.pk,
            }
        )
    return rows


def stored(partner, first_id: int, n: int) -> list[tuple]:
    skip = {"id", "autotask_id", "created_at", "updated_at"}
    names = [f.attname for f in Invoice._meta.concrete_fields if f.attname not in skip]
    return list(
        Invoice.objects.filter(partner=partner, autotask_id__gte=first_id)
        .filter(autotask_id__lt=first_id + n)
        .order_by("autotask_id")
        .values_list(*names)
    )


def test_unnested_insert_stores_exactly_what_the_plain_insert_stores(partner_a, monkeypatch):
    customer = Customer.objects.create(partner=partner_a, name="C", autotask_id=1)
    now = dj_timezone.now()
    with transaction.atomic():
        ours = _insert_new(Invoice, invoice_rows(partner_a, customer, 1_000, 300), now)
    monkeypatch.setattr(upsert, "_as_arrays", lambda *a: None)  # psycopg2 adapts each value
    with transaction.atomic():
        plain = _insert_new(Invoice, invoice_rows(partner_a, customer, 5_000, 300), now)
    assert len(ours) == len(plain) == 300
    assert sorted(a for a, _ in ours) == list(range(1_000, 1_300))
    assert dict(ours) == dict(
        Invoice.objects.filter(autotask_id__lt=2_000).values_list("autotask_id", "id")
    )
    assert stored(partner_a, 1_000, 300) == stored(partner_a, 5_000, 300)
    # Conflicts are skipped and not returned, as before.
    monkeypatch.undo()
    with transaction.atomic():
        again = _insert_new(Invoice, invoice_rows(partner_a, customer, 1_290, 20), now)
    assert sorted(a for a, _ in again) == list(range(1_300, 1_310))


@pytest.mark.parametrize("arrays", [True, False])
def test_too_long_text_fails_as_in_a_plain_insert_never_cut(partner_a, monkeypatch, arrays):
    customer = Customer.objects.create(partner=partner_a, name="C", autotask_id=1)
    if not arrays:
        monkeypatch.setattr(upsert, "_as_arrays", lambda *a: None)
    rows = invoice_rows(partner_a, customer, 1, 1)
    rows[0]["number"] = "x" * 101
    with pytest.raises((DataError, pg_errors.StringDataRightTruncation)), transaction.atomic():
        _insert_new(Invoice, rows, dj_timezone.now())
