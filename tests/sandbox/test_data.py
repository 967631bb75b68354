"""Generated data: deterministic from the seed, realistic in shape (API.md §3.4, §5)."""

import re
import time
from datetime import date, datetime, timedelta

from sandbox.data import generate
from sandbox.schema import ENTITIES
from sandbox.state import SandboxDatabase

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TODAY = date(2025, 10, 1)


def test_same_seed_same_data_other_seed_other_data():
    one = generate(seed=5, companies=30, invoices=300, today=TODAY)
    assert one == generate(seed=5, companies=30, invoices=300, today=TODAY)
    assert one != generate(seed=6, companies=30, invoices=300, today=TODAY)


def test_rows_match_the_schema_column_order():
    for name, rows in generate(seed=1, companies=10, invoices=50, today=TODAY).items():
        assert all(len(row) == len(ENTITIES[name].names) for row in rows), name


def test_invoices_look_like_autotask_invoices():
    db = SandboxDatabase(seed=3, companies=40, invoices=2000, today=TODAY)
    invoices = db.invoices()
    terms = {t[0]: t[4] for t in db.table("paymentterms").snapshot()[1]}
    assert [i["id"] for i in invoices] == sorted(i["id"] for i in invoices)
    assert set(invoices[0]) == set(ENTITIES["invoices"].names)
    oldest = min(i["invoiceDateTime"] for i in invoices)
    assert oldest >= f"{TODAY - timedelta(days=731)}"
    for inv in invoices:
        for name in ("invoiceDateTime", "createDateTime", "dueDate", "fromDate", "toDate"):
            assert STAMP.match(inv[name]), (name, inv[name])
        assert inv["invoiceDateTime"].endswith("T00:00:00.000Z")
        assert (
            inv["invoiceDateTime"] < inv["createDateTime"] < inv["dueDate"]
            or terms[inv["paymentTerm"]] == 0
        )
        invoice_day = datetime.fromisoformat(inv["invoiceDateTime"][:10]).date()
        due = invoice_day + timedelta(days=terms[inv["paymentTerm"]])
        assert inv["dueDate"] == f"{due}T00:00:00.000Z"
        if inv["paidDate"]:
            assert inv["paidDate"].endswith("T00:00:00.000Z") and inv["paidDate"][:10] <= f"{TODAY}"
        assert inv["isVoided"] == (inv["voidedDate"] is not None)
    lines = db.table("billingitems")
    credited = {r[1] for r in lines.snapshot()[1] if r[9] < 0}
    assert credited
    assert any(i["paidDate"] for i in invoices) and any(not i["paidDate"] for i in invoices)
    assert any(i["isVoided"] for i in invoices)
    assert any(i["invoiceNumber"] == "" for i in invoices)
    assert any(i["totalTaxValue"] > 0 for i in invoices)


def test_companies_and_contacts():
    db = SandboxDatabase(seed=2, companies=200, invoices=10, today=TODAY)
    companies = db.companies()
    assert {c["companyType"] for c in companies} >= {1, 2, 3, 7}
    assert any(not c["isActive"] for c in companies)
    contacts = [db.table("contacts").as_dict(r) for r in db.table("contacts").snapshot()[1]]
    assert {c["isActive"] for c in contacts} == {0, 1}


def test_large_database_generates():
    # How fast is a bench figure (bench/sync_initial.py), not a test: tests never time things.
    db = SandboxDatabase(seed=1, companies=2000, invoices=100_000)
    assert len(db.table("invoices")) == 100_000


def test_small_fixture_database_starts_fast(make_sandbox):
    started = time.perf_counter()
    make_sandbox(companies=8, invoices=40)
    assert time.perf_counter() - started < 0.05
