"""The development path (`bin/run`: SQLite) gives the same statuses, outstanding amounts and
labels as PostgreSQL (issue 17, item 3): the status and the outstanding balance are generated
columns, and a partner once saw a blank Status column there while the tests on PostgreSQL
passed. The same invoices are made on both databases and compared."""

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from invoices.models import Invoice

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# (number, total, paid_here, paid_in_autotask_on, voided, due in days from today)
CASES = [
    ("P-OPEN", "100.00", "0.00", None, False, 10),
    ("P-PART", "100.00", "40.00", None, False, 10),
    ("P-FULL", "100.00", "100.00", None, False, -5),
    ("P-OVER", "100.00", "120.00", None, False, -5),
    ("P-ATPD", "100.00", "0.00", "2026-01-10", False, -5),
    ("P-VOID", "100.00", "30.00", None, True, -5),
    ("P-LATE", "100.00", "10.00", None, False, -5),
]

SCRIPT = r"""
import json, sys
from datetime import timedelta
from decimal import Decimal
import django
django.setup()
from django.core.management import call_command
from django.utils import timezone
call_command("migrate", verbosity=0)
from customers.models import Customer
from invoices.models import Invoice
from partners.models import Partner
partner = Partner.objects.create(name="Parity")
customer = Customer.objects.create(partner=partner, name="C", source="autotask", autotask_id=1)
today = timezone.localdate()
out = {}
for i, (number, total, paid, at_paid, voided, due) in enumerate(json.loads(sys.argv[1])):
    inv = Invoice.objects.create(
        partner=partner, customer=customer, source="autotask", autotask_id=100 + i,
        number=number, invoice_date="2026-01-01", total=Decimal(total), paid_here=Decimal(paid),
        paid_in_autotask_on=at_paid, voided=voided, due_date=today + timedelta(days=due),
    )
    inv = Invoice.objects.get(pk=inv.pk)
    out[number] = [inv.status, str(inv.outstanding), inv.status_label]
print("RESULT " + json.dumps(out))
"""


def rows_here(partner, make_invoice) -> dict:
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.localdate()
    out = {}
    for number, total, paid, at_paid, voided, due in CASES:
        inv = make_invoice(
            partner,
            number=number,
            total=total,
            paid_here=Decimal(paid),
            paid_in_autotask_on=at_paid,
            voided=voided,
            due_date=today + timedelta(days=due),
        )
        inv = Invoice.objects.get(pk=inv.pk)
        out[number] = [inv.status, str(inv.outstanding), inv.status_label]
    return out


def test_sqlite_development_database_matches_postgresql(partner_a, make_invoice, tmp_path):
    postgres = rows_here(partner_a, make_invoice)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings.development", PAYSYNC_VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(CASES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    sqlite = json.loads(line[len("RESULT ") :])
    assert (tmp_path / "paysync.sqlite3").exists()  # it really ran on SQLite
    assert sqlite == postgres
    # And the values are the right ones, not merely equal.
    assert postgres["P-PART"] == ["partially_paid", "60.00", "Partially paid"]
    assert postgres["P-OVER"][:2] == ["paid", "0.00"]
    assert postgres["P-ATPD"][:2] == ["paid", "0.00"]
    assert postgres["P-VOID"] == ["void", "0.00", "Void"]
    assert postgres["P-LATE"] == ["partially_paid", "90.00", "Overdue"]
