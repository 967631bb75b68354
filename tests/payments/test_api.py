"""`/api/v1/payments/` with Idempotency-Key (IK-1..3), archive/unarchive, and customers and
invoices created here (R7, R9)."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from customers.models import Customer
from invoices.models import Invoice
from partners.models import IdempotencyKey
from payments.models import Payment, WritebackOutbox

pytestmark = pytest.mark.django_db


def post(api, data, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post("/api/v1/payments/", data, format="json", **headers)


def test_record_list_read_and_delete_a_payment(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="100.00")
    r = post(api_a, {"invoice": invoice.pk, "amount": "40.00", "method": "ach"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["amount"], body["method"], body["status"], body["source"]) == (
        "40.00",
        "ach",
        "succeeded",
        "manual",
    )
    assert api_a.get("/api/v1/payments/").json()["count"] == 1
    assert api_a.get(f"/api/v1/payments/{body['id']}/").json()["invoice"] == invoice.pk
    invoice.refresh_from_db()
    assert invoice.status == "partially_paid"
    assert api_a.delete(f"/api/v1/payments/{body['id']}/").status_code == 204
    invoice.refresh_from_db()
    assert (invoice.paid_here, invoice.status) == (0, "open")
    assert api_a.get(f"/api/v1/payments/{body['id']}/").json()["status"] == "deleted"


def test_amount_above_outstanding_is_400_with_the_balance(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="10.00")
    r = post(api_a, {"invoice": invoice.pk, "amount": "10.01"})
    assert r.status_code == 400
    assert r.json()["code"] == "amount_exceeds_outstanding" and r.json()["outstanding"] == "10.00"
    assert Payment.objects.count() == 0


def test_other_partners_invoice_and_payment_are_404(api_b, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="10.00")
    assert post(api_b, {"invoice": invoice.pk, "amount": "1.00"}).status_code == 404
    p = Payment.objects.create(
        partner=partner_a, invoice=invoice, amount="1.00", received_at="2026-01-01T00:00:00Z"
    )
    assert api_b.delete(f"/api/v1/payments/{p.pk}/").status_code == 404
    p.refresh_from_db()
    assert p.status == "succeeded"


def test_idempotency_key_replays_the_same_response(api_a, partner_a, make_invoice):
    """IK-1."""
    invoice = make_invoice(partner_a, total="100.00")
    data = {"invoice": invoice.pk, "amount": "25.00"}
    first = post(api_a, data, key="key-1")
    again = post(api_a, data, key="key-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 1
    invoice.refresh_from_db()
    assert invoice.paid_here == Decimal("25.00")


def test_idempotency_key_with_another_body_is_422(api_a, partner_a, make_invoice):
    """IK-2."""
    invoice = make_invoice(partner_a, total="100.00")
    post(api_a, {"invoice": invoice.pk, "amount": "25.00"}, key="key-2")
    r = post(api_a, {"invoice": invoice.pk, "amount": "26.00"}, key="key-2")
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    assert Payment.objects.count() == 1


def test_idempotency_key_still_running_is_409(api_a, partner_a, make_invoice):
    from partners.idempotency import request_fingerprint

    invoice = make_invoice(partner_a, total="100.00")
    data = {"invoice": invoice.pk, "amount": "25.00"}
    import json

    body = json.dumps(data).encode()
    fp = request_fingerprint("POST", "/api/v1/payments/", body)
    IdempotencyKey.objects.create(partner=partner_a, key="key-3", fingerprint=fp)
    r = api_a.post(
        "/api/v1/payments/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-3"
    )
    assert r.status_code == 409
    assert Payment.objects.count() == 0


def test_idempotency_keys_are_per_partner(api_a, api_b, partner_a, partner_b, make_invoice):
    ia, ib = make_invoice(partner_a), make_invoice(partner_b)
    assert post(api_a, {"invoice": ia.pk, "amount": "1.00"}, key="same").status_code == 201
    assert post(api_b, {"invoice": ib.pk, "amount": "1.00"}, key="same").status_code == 201


def test_validation_errors_are_not_kept_under_the_key(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="10.00")
    data = {"invoice": invoice.pk, "amount": "11.00"}
    assert post(api_a, data, key="k-err").status_code == 400
    again = post(api_a, data, key="k-err")
    assert again.status_code == 400 and "Idempotent-Replayed" not in again
    assert not IdempotencyKey.objects.filter(key="k-err").exists()


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_posts_with_one_key_make_one_payment(partner_a, user_a, make_invoice):
    """IK-3: one effect; the others get the replay (201) or 409 while the first runs."""
    invoice = make_invoice(partner_a, total="100.00")
    data = {"invoice": invoice.pk, "amount": "5.00"}
    answers, barrier = [], threading.Barrier(50)

    def worker():
        api = APIClient()
        api.force_authenticate(user_a)
        barrier.wait()
        try:
            answers.append(post(api, data, key="storm").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 50 and set(answers) <= {201, 409}
    assert Payment.objects.filter(partner=partner_a).count() == 1
    invoice.refresh_from_db()
    assert invoice.paid_here == Decimal("5.00")


def test_archive_and_unarchive_an_invoice(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="10.00")
    r = api_a.post(f"/api/v1/invoices/{invoice.pk}/archive/")
    assert r.status_code == 200 and r.json()["archived_at"]
    assert api_a.get("/api/v1/invoices/").json()["count"] == 0
    assert post(api_a, {"invoice": invoice.pk, "amount": "1.00"}).status_code == 409
    r = api_a.post(f"/api/v1/invoices/{invoice.pk}/unarchive/")
    assert r.status_code == 200 and r.json()["archived_at"] is None
    assert api_a.get("/api/v1/invoices/").json()["count"] == 1


def test_archive_and_unarchive_a_customer(api_a, api_b, partner_a, make_invoice):
    customer = make_invoice(partner_a).customer
    assert api_b.post(f"/api/v1/customers/{customer.pk}/archive/").status_code == 404
    assert api_a.post(f"/api/v1/customers/{customer.pk}/archive/").status_code == 200
    assert api_a.get("/api/v1/customers/").json()["count"] == 0
    assert api_a.post(f"/api/v1/customers/{customer.pk}/unarchive/").status_code == 200
    assert api_a.get("/api/v1/customers/").json()["count"] == 1


def test_local_customer_and_invoice_are_created_here_and_never_written_back(api_a, partner_a):
    r = api_a.post("/api/v1/customers/", {"name": "Walk-in Ltd"}, format="json")
    assert r.status_code == 201 and r.json()["source"] == "local"
    customer_id = r.json()["id"]
    r = api_a.post(
        "/api/v1/invoices/",
        {
            "customer_id": customer_id,
            "number": "LOCAL-1",
            "invoice_date": "2026-02-01",
            "total": "50.00",
            "currency": "USD",  # a customer created here has no currency of its own
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["source"], body["autotask_id"], body["status"]) == ("local", None, "open")
    assert post(api_a, {"invoice": body["id"], "amount": "50.00"}).status_code == 201
    invoice = Invoice.objects.get(pk=body["id"])
    assert invoice.status == "paid"
    assert not WritebackOutbox.objects.exists()
    assert Customer.objects.get(pk=customer_id).autotask_id is None


def test_local_invoice_for_another_partners_customer_is_refused(api_b, partner_a, make_invoice):
    customer = make_invoice(partner_a).customer
    r = api_b.post(
        "/api/v1/invoices/",
        {"customer_id": customer.pk, "number": "X", "invoice_date": "2026-02-01", "total": "1"},
        format="json",
    )
    assert r.status_code == 400 and r.json()["code"] == "customer_not_found"
    assert Invoice.objects.filter(number="X").count() == 0
