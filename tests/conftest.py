"""Shared fixtures. Every tenancy test has three partners: A (the owner of the data), B (the
intruder who must get 404) and C (a bystander whose data must not change either)."""

import pytest
from rest_framework.test import APIClient

from partners.models import Partner, User

pytest_plugins = ["tests.fixtures.sandbox", "tests.fixtures.sync"]


@pytest.fixture
def make_partner(db):
    def make(name="Acme MSP", **kwargs):
        return Partner.objects.create(name=name, **kwargs)

    return make


@pytest.fixture
def make_user(db):
    def make(partner, username=None, role=User.Role.OWNER, password="pw-for-tests-1", **kwargs):
        username = username or f"{partner.slug}-{role}"
        user = User.objects.create_user(
            username=username,
            email=f"{username}@example.test",
            password=password,
            partner=partner,
            role=role,
            **kwargs,
        )
        return user

    return make


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
