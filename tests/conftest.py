"""Shared fixtures. Every tenancy test has three partners: A (the owner of the data), B (the
intruder who must get 404) and C (a bystander whose data must not change either)."""

import pytest
from rest_framework.test import APIClient

from partners.models import Partner

from . import factories
from .harness.threads import join_started

pytest_plugins = ["tests.harness.sandbox", "tests.harness.sync"]


@pytest.fixture
def make_partner(db):
    return factories.create_partner


@pytest.fixture
def make_user(db):
    return factories.create_user


@pytest.fixture
def make_invoice(db):
    """make_invoice(partner, total="100.00", source="autotask", customer=…, …): an invoice and,
    unless given, its own customer (tests/factories.py)."""
    return factories.create_invoice


@pytest.fixture
def partner_a(make_partner):
    return make_partner("Alpha IT", primary_integration=Partner.Integration.AUTOTASK)


@pytest.fixture
def partner_b(make_partner):
    return make_partner("Bravo Networks", primary_integration=Partner.Integration.AUTOTASK)


@pytest.fixture
def partner_c(make_partner):
    return make_partner("Charlie Tech")


@pytest.fixture
def user_a(make_user, partner_a):
    return make_user(partner_a)


@pytest.fixture
def user_b(make_user, partner_b):
    return make_user(partner_b)


@pytest.fixture
def user_c(make_user, partner_c):
    return make_user(partner_c)


@pytest.fixture
def api_a(user_a):
    client = APIClient()
    client.force_authenticate(user_a)
    return client


@pytest.fixture
def api_b(user_b):
    client = APIClient()
    client.force_authenticate(user_b)
    return client


@pytest.fixture
def client_a(client, user_a):
    client.force_login(user_a)
    return client


@pytest.fixture
def client_b(client, user_b):
    client.force_login(user_b)
    return client


@pytest.fixture
def join_threads():
    """No thread `tests.harness.threads.in_thread` started outlives its test (the database is
    flushed after it)."""
    yield
    join_started()
