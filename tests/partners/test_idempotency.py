"""Issue 18 item 7: the Idempotency-Key store keeps only completed outcomes (2xx and 409
conflicts); a validation failure (400, 422) is not stored, so the corrected retry with the
same key runs."""

import pytest
from django.utils import timezone

from partners.idempotency import is_completed_outcome
from partners.models import IdempotencyKey
from payments.models import Payment

pytestmark = pytest.mark.django_db


def post(api, data, key):
    return api.post("/api/v1/payments/", data, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_validation_failure_is_not_stored_and_the_corrected_retry_succeeds(
    api_a, partner_a, make_invoice
):
    invoice = make_invoice(partner_a, total="10.00")
    refused = post(api_a, {"invoice": invoice.pk, "amount": "11.00"}, "k-fix")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.filter(partner=partner_a, key="k-fix").exists()
    fixed = post(api_a, {"invoice": invoice.pk, "amount": "10.00"}, "k-fix")
    assert fixed.status_code == 201, fixed.content
    assert "Idempotent-Replayed" not in fixed
    # From now on the key replays the success.
    again = post(api_a, {"invoice": invoice.pk, "amount": "10.00"}, "k-fix")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert Payment.objects.filter(partner=partner_a).count() == 1


def test_a_serializer_error_is_not_stored_either(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="10.00")
    assert post(api_a, {"invoice": invoice.pk, "amount": "abc"}, "k-ser").status_code == 400
    assert post(api_a, {"invoice": invoice.pk, "amount": "1.00"}, "k-ser").status_code == 201
    assert Payment.objects.filter(partner=partner_a).count() == 1


def test_a_conflict_is_a_completed_outcome_and_replayed(api_a, partner_a, make_invoice):
    invoice = make_invoice(partner_a, total="10.00")
    type(invoice).objects.filter(pk=invoice.pk).update(archived_at=timezone.now())
    first = post(api_a, {"invoice": invoice.pk, "amount": "1.00"}, "k-409")
    assert first.status_code == 409, first.content
    record = IdempotencyKey.objects.get(partner=partner_a, key="k-409")
    assert record.response_status == 409 and not record.in_progress
    type(invoice).objects.filter(pk=invoice.pk).update(archived_at=None)
    again = post(api_a, {"invoice": invoice.pk, "amount": "1.00"}, "k-409")
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("status", "kept"),
    [
        (200, True),
        (201, True),
        (204, True),
        (409, True),
        (400, False),
        (404, False),
        (422, False),
        (429, False),
    ],
)
def test_which_outcomes_are_kept(status, kept):
    assert is_completed_outcome(status) is kept
