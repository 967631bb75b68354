"""The partner list as the ops overview: users, connection, last syncs, Autotask requests vs
budget, open problems with filters, search by Autotask ids and invoice numbers, and a query
count that does not grow with the number of partners."""

import re

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from customers.models import Customer
from integrations.autotask.client import default_limiter
from integrations.autotask.limits import database_key
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from partners.models import Partner
from sync.models import SyncRun

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:partners_partner_changelist"


def listed(response) -> list[str]:
    return [p.name for p in response.context["cl"].result_list]


def row_of(response, partner) -> dict:
    """The rendered cells of one partner's row, by column header."""
    cl = response.context["cl"]
    obj = next(p for p in cl.result_list if p.pk == partner.pk)
    admin_ = cl.model_admin
    columns = [n for n in cl.list_display if n not in ("action_checkbox", "name")]
    return {name: str(getattr(admin_, name)(obj)) for name in columns}


@pytest.fixture
def ops(client, support_user):
    client.force_login(support_user)
    return client


def test_row_shows_users_connection_last_syncs_budget_and_problems(
    ops, partner_a, user_a, parked_writeback, failed_run, parked_event
):
    response = ops.get(reverse(CHANGELIST))
    row = row_of(response, partner_a)
    assert ">1</a>" in row["users"]
    assert "Needs attention" in row["connection"]
    assert row["last_new_data"].startswith('<a href="/admin/sync/syncrun/')
    assert "failed</a> just now" in row["last_new_data"]  # the failed run is the latest
    assert row["last_unpaid"] == "never"
    problems = row["open_problems"]
    assert "connection needs attention" in problems
    assert "1 failed write-back(s)" in problems
    assert "1 failed run(s) in the last day" in problems
    assert "1 parked payment event(s)" in problems
    conn = AutotaskConnection.objects.get(partner=partner_a)
    used, limit = default_limiter().usage([database_key(ci=conn.database_ci, username="")])[
        database_key(ci=conn.database_ci, username="")
    ]
    assert used > 0 and limit is not None
    assert row["autotask_requests"] == f"{used:,} / {limit:,} ({used * 100 // limit}%)"


def test_problem_links_open_the_filtered_lists(ops, partner_a, parked_writeback, failed_run):
    response = ops.get(reverse(CHANGELIST))
    problems = row_of(response, partner_a)["open_problems"]
    links = re.findall(r'href="([^"]+)"', problems)
    assert len(links) == 3
    assert links[0] == reverse(
        "admin:integrations_autotaskconnection_change",
        args=[AutotaskConnection.objects.get(partner=partner_a).pk],
    )
    for link in links[1:]:
        page = ops.get(link.replace("&amp;", "&"))
        assert page.status_code == 200, link
    outbox_link = next(link for link in links if "writebackoutbox" in link)
    page = ops.get(outbox_link.replace("&amp;", "&"))
    assert [o.pk for o in page.context["cl"].result_list] == [parked_writeback.pk]
    runs_link = next(link for link in links if "syncrun" in link)
    page = ops.get(runs_link.replace("&amp;", "&"))
    assert [r.pk for r in page.context["cl"].result_list] == [failed_run.pk]


def test_partner_without_problems_and_without_connection(ops, partner_c):
    row = row_of(ops.get(reverse(CHANGELIST)), partner_c)
    assert row["connection"] == "not connected"
    assert row["open_problems"] == "—"
    assert row["autotask_requests"] == "—"
    assert row["last_new_data"] == "never"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("problems=any", ["Alpha IT"]),
        ("problems=writeback", ["Alpha IT"]),
        ("problems=connection", ["Alpha IT"]),
        ("problems=runs", []),
        ("problems=none", ["Bravo Networks", "Charlie Tech"]),
        ("connection=needs_attention", ["Alpha IT"]),
        ("connection=none", ["Bravo Networks", "Charlie Tech"]),
        ("paused=yes", []),
    ],
)
def test_filters(ops, parked_writeback, partner_b, partner_c, query, expected):
    assert listed(ops.get(reverse(CHANGELIST) + "?" + query)) == expected


def test_failed_runs_older_than_a_day_are_not_open_problems(ops, partner_a, failed_run):
    from datetime import timedelta

    from django.utils import timezone

    SyncRun.objects.filter(pk=failed_run.pk).update(
        created_at=timezone.now() - timedelta(days=1, minutes=1)
    )
    assert listed(ops.get(reverse(CHANGELIST) + "?problems=runs")) == []


def search(ops, term) -> list[str]:
    return listed(ops.get(reverse(CHANGELIST), {"q": term}))


def test_search_by_name_invoice_number_and_autotask_ids(
    ops, partner_a, partner_b, partner_c, connected, make_partner
):
    invoice = Invoice.objects.filter(partner=partner_a).exclude(number="").first()
    customer = Customer.objects.filter(partner=partner_a).first()
    # Bravo has a customer with another Autotask id and an invoice with another number.
    other = Customer.objects.create(partner=partner_b, autotask_id=999_999_001, name="Other")
    Invoice.objects.create(
        partner=partner_b,
        customer=other,
        autotask_id=999_999_002,
        number="BRAVO-1",
        invoice_date="2026-01-01",
        total="10.00",
    )
    assert search(ops, "Alpha") == ["Alpha IT"]
    assert search(ops, invoice.number) == ["Alpha IT"]
    assert search(ops, str(invoice.autotask_id)) == ["Alpha IT"]
    assert search(ops, str(customer.autotask_id)) == ["Alpha IT"]
    assert search(ops, "BRAVO-1") == ["Bravo Networks"]
    assert search(ops, "999999001") == ["Bravo Networks"]
    assert search(ops, "no-such-thing") == []
    assert search(ops, "9" * 30) == []  # not an id: no overflow, no error


def test_change_page_shows_the_overview(ops, partner_a, parked_writeback):
    page = ops.get(reverse("admin:partners_partner_change", args=[partner_a.pk]))
    html = page.content.decode()
    assert "Initial sync: <a" in html
    assert "1 failed write-back(s)" in html
    assert "Autotask requests this hour / budget" in html


def test_changelist_queries_do_not_grow_with_partners(ops, make_partner):
    def make_many(n, start):
        for i in range(start, start + n):
            partner = make_partner(f"Partner {i:03d}")
            AutotaskConnection.objects.create(
                partner=partner, account_email="a@example.test", database_ci=5000 + i
            )
            SyncRun.objects.create(partner=partner, kind="new_data", trigger="schedule")
            SyncRun.objects.create(partner=partner, kind="unpaid", trigger="schedule")

    def count():
        with CaptureQueriesContext(db_connection) as ctx:
            assert ops.get(reverse(CHANGELIST)).status_code == 200
        return len(ctx.captured_queries)

    make_many(2, 0)
    few = count()
    make_many(30, 2)
    assert Partner.objects.count() == 32
    assert count() == few
