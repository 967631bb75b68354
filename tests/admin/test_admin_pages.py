"""Every admin page renders for a superuser, and no page shows a stored credential (SE-5)."""

import pytest
from django.contrib import admin
from django.urls import reverse

from partners.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root-ops", "ops@paysync.test", "pw-ops-1")


def admin_urls(obj_by_model):
    for model in admin.site._registry:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        yield reverse(f"{prefix}_changelist")
        obj = obj_by_model.get(model)
        if obj is not None:
            yield reverse(f"{prefix}_change", args=[obj.pk])


def test_no_admin_page_shows_credentials(
    client, superuser, partner_a, connect, run_now, autotask_sandbox
):
    conn = connect(partner_a)
    run = run_now(conn.first_run)
    from customers.models import Customer
    from integrations.models import AutotaskConnection
    from invoices.models import Invoice
    from sync.models import SyncRun

    objects = {
        AutotaskConnection: conn,
        SyncRun: run,
        Invoice: Invoice.objects.first(),
        Customer: Customer.objects.first(),
        type(partner_a): partner_a,
    }
    client.force_login(superuser)
    db = autotask_sandbox.db
    pages = 0
    for url in admin_urls(objects):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        html = response.content.decode()
        assert db.secret not in html, url
        assert db.username not in html, url
        assert "v1:" + conn.secret.key_id not in html, url  # not even the ciphertext
        pages += 1
    assert pages >= 10


def test_partner_user_cannot_reach_admin(client, user_a):
    client.force_login(user_a)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
