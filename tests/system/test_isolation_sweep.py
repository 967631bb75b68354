"""Tenant isolation sweep (MT-1): every URL pattern of the dashboard and the API, discovered
from the URL configuration, is requested as partner B against partner A's objects. Object
routes must answer 404 (or 405 for a method the route does not have) for every method, and
nothing of A's may change. A new route with an object id that this test does not know fails
the test until someone says which of A's objects it takes."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from customers.models import Customer
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from partners.models import ApiToken, User
from partners.tokens import api_token_create
from payments.models import Payment, ReconciliationDrift, WritebackOutbox
from sync.models import ChangeLogEntry, SyncRun

pytestmark = pytest.mark.django_db

SKIP_PREFIXES = ("admin:", "api:schema", "api:docs")
# Not partner pages: probes, metrics (bearer token, tested in tests/config), login.
SKIP_NAMES = {"healthz", "readyz", "metrics", "login", "logout", "api:auth-token", "api:api-root"}
# Public, authenticated by its Standard Webhooks signature, not by a login: its tenant binding
# (A's endpoint naming B's invoice) is tested in tests/payments/test_webhook_view.py.
SKIP_NAMES |= {"api:payment-webhook"}

# Which of partner A's objects each object route takes.
OBJECT_FOR = {
    "api:user-detail": lambda a: a["user"].pk,
    "api:sync-run-detail": lambda a: a["run"].pk,
    "api:sync-run-changes": lambda a: a["run"].pk,
    "api:invoice-detail": lambda a: a["invoice"].pk,
    "api:invoice-pdf": lambda a: a["invoice"].pk,
    "api:invoice-timeline": lambda a: a["invoice"].pk,
    "api:invoice-move-payments": lambda a: a["invoice"].pk,
    "payments:move": lambda a: a["invoice"].pk,
    "api:customer-detail": lambda a: a["customer"].pk,
    "sync:run-detail": lambda a: a["run"].pk,
    "invoices:detail": lambda a: a["invoice"].pk,
    "invoices:pdf": lambda a: a["invoice"].pk,
    "api:payment-detail": lambda a: a["payment"].pk,
    "payments:delete": lambda a: a["payment"].pk,
    "payments:record": lambda a: a["invoice"].pk,
    "api:invoice-archive": lambda a: a["invoice"].pk,
    "api:invoice-unarchive": lambda a: a["invoice"].pk,
    "api:customer-archive": lambda a: a["customer"].pk,
    "api:customer-unarchive": lambda a: a["customer"].pk,
    "invoices:archive": lambda a: a["invoice"].pk,
    "customers:archive": lambda a: a["customer"].pk,
    "invoices:customer-invoice-create": lambda a: a["customer"].pk,
    "customers:detail": lambda a: a["customer"].pk,
    "api:api-token-detail": lambda a: a["api_token"].pk,
    "dashboard:api-token-revoke": lambda a: a["api_token"].pk,
}
# The CSV exports take no object id (the sweep below reads them as B, whole, like any page);
# test_csv_exports_hold_only_the_partners_rows checks A's export has A's rows and B's has none.
CSV_EXPORTS = ("invoices:export", "payments:export", "customers:export")


def walk(patterns, prefix="", namespace=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = p.namespace or ""
            full_ns = f"{namespace}{ns}:" if ns else namespace
            yield from walk(p.url_patterns, prefix + str(p.pattern), full_ns)
        elif isinstance(p, URLPattern) and p.name:
            yield f"{namespace}{p.name}", prefix + str(p.pattern), p.pattern.regex.groupindex


def routes():
    seen = {}
    for name, route, groups in walk(get_resolver().url_patterns):
        if name.startswith(SKIP_PREFIXES) or name in SKIP_NAMES:
            continue
        if "format" in groups:  # DRF's format-suffix twins of the same views
            continue
        seen.setdefault(name, (route, list(groups)))
    return seen


def build_path(route, groups, value):
    path = "/" + route
    path = re.sub(r"\(\?P<\w+>[^)]+\)", str(value), path)  # regex routes (DRF routers)
    path = re.sub(r"<(?:\w+:)?(\w+)>", str(value), path)  # path() converters
    return path.replace("^", "").replace("$", "").replace("\\", "")


@pytest.fixture
def world_a(partner_a, user_a):
    customer = Customer.objects.create(
        partner=partner_a, source="autotask", autotask_id=501, name="Alpha Customer Secretive"
    )
    invoice = Invoice.objects.create(
        partner=partner_a,
        customer=customer,
        source="autotask",
        autotask_id=9001,
        number="ALPHA-INV-9001",
        invoice_date="2026-01-01",
        total="120.00",
    )
    run = SyncRun.objects.create(partner=partner_a, kind="initial", trigger="connect")
    ChangeLogEntry.objects.create(
        partner=partner_a,
        run=run,
        record_type="invoice",
        record_id=invoice.pk,
        field="total",
        old_value="1",
        new_value="2",
    )
    AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="a@alpha.test",
        username="alpha-user",
        secret="alpha-secret-value",
        username_last4="user",
    )
    payment = Payment.objects.create(
        partner=partner_a, invoice=invoice, amount="20.00", received_at="2026-01-02T00:00:00Z"
    )
    Invoice.objects.filter(pk=invoice.pk).update(paid_here="20.00")
    # On A's drift report (API and page): B must not see it there.
    ReconciliationDrift.objects.create(
        partner=partner_a,
        invoice=invoice,
        reason=ReconciliationDrift.Reason.PAID_DATE_CLEARED,
        last_seen_at="2026-01-03T00:00:00Z",
    )
    WritebackOutbox.objects.create(partner=partner_a, invoice=invoice, state="failed")
    api_token, _ = api_token_create(user=user_a, name="Alpha token")
    return {
        "api_token": api_token,
        "user": user_a,
        "customer": customer,
        "invoice": invoice,
        "run": run,
        "payment": payment,
    }


def snapshot(partner):
    return (
        list(Customer.objects.filter(partner=partner).order_by("id").values()),
        list(Invoice.objects.filter(partner=partner).order_by("id").values()),
        list(SyncRun.objects.filter(partner=partner).order_by("id").values()),
        list(AutotaskConnection.objects.filter(partner=partner).values()),
        list(User.objects.filter(partner=partner).order_by("id").values()),
        list(Payment.objects.filter(partner=partner).order_by("id").values()),
        list(ApiToken.objects.filter(partner=partner).order_by("id").values()),
    )


def test_every_route_is_known(world_a):
    unknown = [
        name for name, (route, groups) in routes().items() if groups and name not in OBJECT_FOR
    ]
    assert unknown == [], f"object routes without an entry in OBJECT_FOR: {unknown}"


def test_partner_b_gets_404_on_every_object_route_and_a_is_unchanged(
    world_a, partner_a, user_b, client
):
    before = snapshot(partner_a)
    api = APIClient()
    api.force_authenticate(user_b)
    client.force_login(user_b)
    checked = 0
    for name, (route, groups) in routes().items():
        if not groups:
            continue
        path = build_path(route, groups, OBJECT_FOR[name](world_a))
        http = api if name.startswith("api:") else client
        for method in ("get", "post", "put", "patch", "delete"):
            response = getattr(http, method)(path)
            assert response.status_code in (404, 405), (name, method, response.status_code)
            checked += 1
    assert checked >= 5 * len(OBJECT_FOR) - 5
    assert snapshot(partner_a) == before


def test_pages_without_objects_show_b_nothing_of_a(world_a, partner_a, user_b, client):
    before = snapshot(partner_a)
    api = APIClient()
    api.force_authenticate(user_b)
    client.force_login(user_b)
    for name, (route, groups) in routes().items():
        if groups:
            continue
        path = build_path(route, groups, 0)
        http = api if name.startswith("api:") else client
        response = http.get(path)
        assert response.status_code < 500, (name, response.status_code)
        raw = b"".join(response.streaming_content) if response.streaming else response.content
        body = raw.decode(errors="replace")
        for leak in (
            "ALPHA-INV-9001",
            "Alpha Customer Secretive",
            "alpha-secret-value",
            "alpha-user",
            world_a["user"].username,
            "Alpha token",
        ):
            assert leak not in body, (name, leak)
    assert snapshot(partner_a) == before


def test_csv_exports_hold_only_the_partners_rows(world_a, user_a, user_b, client):
    assert set(CSV_EXPORTS) <= set(routes())
    for name, expected in zip(
        CSV_EXPORTS, ("ALPHA-INV-9001", "ALPHA-INV-9001", "Alpha Customer Secretive"), strict=True
    ):
        path = reverse(name) + "?archived=all"
        client.force_login(user_a)
        mine = b"".join(client.get(path).streaming_content).decode()
        assert expected in mine, name
        client.force_login(user_b)
        response = client.get(path)
        assert response.status_code == 200
        theirs = b"".join(response.streaming_content).decode()
        assert len(theirs.strip().splitlines()) == 1, (name, theirs)  # the header only
        assert "ALPHA" not in theirs and "Alpha" not in theirs, name


def test_anonymous_is_sent_to_login_or_refused(world_a, client):
    for name, (route, groups) in routes().items():
        path = build_path(route, groups, world_a["invoice"].pk)
        response = client.get(path)
        if name.startswith("api:"):
            assert response.status_code in (401, 403), (name, response.status_code)
        else:
            assert response.status_code == 302, (name, response.status_code)
            assert "/accounts/login/" in response["Location"]
