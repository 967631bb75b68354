"""The partner's home page (issue 17, item 1): outstanding and overdue totals, payments this month
with a chart, recent payments, sync health (last success, next scheduled run, problems with
their one action) and a getting-started checklist until connected and paid once."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import AutotaskConnection
from payments.models import Payment
from payments.overview import partner_overview
from sync.models import SyncState

pytestmark = pytest.mark.django_db


def pay(partner, invoice, amount, when=None):
    return Payment.objects.create(
        partner=partner,
        invoice=invoice,
        amount=Decimal(amount),
        currency=invoice.currency,
        received_at=when or timezone.now(),
    )


@pytest.fixture
def books(partner_a, partner_b, make_invoice):
    today = timezone.localdate()
    made = [
        make_invoice(partner_a, total="100.00", due_date=today + timedelta(days=5)),
        make_invoice(
            partner_a, total="250.00", due_date=today - timedelta(days=2), paid_here=Decimal(50)
        ),
        make_invoice(partner_a, total="80.00", due_date=today - timedelta(days=9), voided=True),
        make_invoice(partner_a, total="40.00", currency="EUR", due_date=today - timedelta(days=1)),
        make_invoice(partner_a, total="999.00", archived_at=timezone.now()),
        make_invoice(partner_b, total="5000.00", due_date=today - timedelta(days=3)),  # not A's
    ]
    pay(partner_a, made[1], "50.00")
    pay(partner_a, made[0], "10.00", when=timezone.now() - timedelta(days=70))
    pay(partner_b, made[5], "4000.00")
    return made


def test_totals_are_the_partners_own_per_currency(partner_a, books):
    o = partner_overview(partner=partner_a)
    outstanding = {m.currency: (m.amount, m.count) for m in o.outstanding}
    # 100 open + 200 left of 250; void and archived left out; B's invoice never counted.
    assert outstanding == {"USD": (Decimal("300.00"), 2), "EUR": (Decimal("40.00"), 1)}
    overdue = {m.currency: (m.amount, m.count) for m in o.overdue}
    assert overdue == {"USD": (Decimal("200.00"), 1), "EUR": (Decimal("40.00"), 1)}
    assert [m.currency for m in o.outstanding] == ["USD", "EUR"]  # the largest amount first
    assert [m.currency for m in o.overdue] == ["USD", "EUR"]
    assert {m.currency: m.amount for m in o.this_month} == {"USD": Decimal("50.00")}
    assert o.chart_currency == "USD"
    assert len(o.bars) == 6 and o.bars[-1].amount == Decimal("50.00")
    earlier = (timezone.localdate() - timedelta(days=70)).strftime("%b")
    assert o.bars[-1].height == 100
    assert {b.label: b.amount for b in o.bars}[earlier] == Decimal("10.00")
    assert [p.amount for p in o.recent_payments] == [Decimal("50.00"), Decimal("10.00")]


def test_overdue_leaves_out_a_currency_with_nothing_past_due(partner_a, make_invoice):
    today = timezone.localdate()
    make_invoice(partner_a, total="70.00", currency="GBP", due_date=today + timedelta(days=1))
    make_invoice(partner_a, total="30.00", currency="USD", due_date=today - timedelta(days=1))
    make_invoice(partner_a, total="500.00", currency="USD", due_date=today)  # due today: not past
    o = partner_overview(partner=partner_a)
    assert [(m.currency, m.amount, m.count) for m in o.outstanding] == [
        ("USD", Decimal("530.00"), 2),
        ("GBP", Decimal("70.00"), 1),
    ]
    assert [(m.currency, m.amount, m.count) for m in o.overdue] == [("USD", Decimal("30.00"), 1)]


def test_getting_started_until_connected_and_paid_once(client_a, partner_a, make_invoice):
    html = client_a.get(reverse("dashboard:home")).content.decode()
    assert 'id="getting-started"' in html
    assert "Connect Autotask" in html and "Not connected." in html
    AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="a@a.test",
        username="u",
        secret="s",
        connected_at=timezone.now(),
    )
    SyncState.objects.create(
        partner=partner_a, last_success={"new_data": timezone.now().isoformat()}
    )
    from payments.services import payment_settings

    payment_settings.payment_settings_create(partner=partner_a)
    pay(partner_a, make_invoice(partner_a), "1.00")
    html = client_a.get(reverse("dashboard:home")).content.decode()
    assert 'id="getting-started"' not in html


def test_sync_health_and_problems_with_their_action(client_a, partner_a):
    connection = AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="a@a.test",
        username="u",
        secret="s",
        connected_at=timezone.now() - timedelta(days=3),
    )
    last = timezone.now() - timedelta(hours=2)
    SyncState.objects.create(partner=partner_a, last_success={"new_data": last.isoformat()})
    o = partner_overview(partner=partner_a)
    now = timezone.now()
    assert now < o.next_run["new_data"] <= now + timedelta(hours=1)
    assert now < o.next_run["unpaid"] <= now + timedelta(days=1)
    assert o.last_success["new_data"] == last and o.last_success["unpaid"] is None
    assert o.problems == []
    html = client_a.get(reverse("dashboard:home")).content.decode()
    assert "Last success" in html and "never" in html

    connection.record_error("bad_secret", "Autotask refused the secret.", needs_attention=True)
    o = partner_overview(partner=partner_a)
    assert o.next_run == {"new_data": None, "unpaid": None}
    [problem] = o.problems
    assert problem.url == reverse("dashboard:integrations")
    html = client_a.get(reverse("dashboard:home")).content.decode()
    section = re.search(r'id="problems".*?</section>', html, re.S).group(0)
    assert "Fix the connection" in section


def test_the_first_sync_after_connecting_counts_as_the_hourly_success(partner_a):
    AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="a@a.test",
        username="u",
        secret="s",
        connected_at=timezone.now(),
    )
    first = timezone.now() - timedelta(minutes=3)
    SyncState.objects.create(partner=partner_a, last_success={"initial": first.isoformat()})
    o = partner_overview(partner=partner_a)
    assert o.last_success == {"new_data": first, "unpaid": None}
    assert [s.done for s in o.steps][:2] == [True, True]
