"""Out-of-order and duplicate processor events end where in-order delivery ends, in our
database and in Autotask's paidDate (WH-6 in small); replays days later are no-ops (WH-8);
secret rotation (WH-3 in small)."""

import itertools
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from invoices.models import Invoice
from payments.models import Payment, PaymentSettings, WebhookEvent
from payments.services import payment_settings, webhook_events

from .conftest import Sender, counts, event
from .helpers import writeback_drain

pytestmark = pytest.mark.django_db

ORDER = {"succeeded": 1, "refunded": 2, "deleted": 3}


def process_all(partner):
    for pk in WebhookEvent.objects.filter(partner=partner, status="received").values_list(
        "pk", flat=True
    ):
        webhook_events.webhook_event_process(partner=partner, event_id=pk)


@pytest.fixture
def world(partner_a, connect, run_now, make_sandbox, endpoint_factory):
    server = make_sandbox(companies=8, invoices=120)
    conn = connect(partner_a, server=server)
    assert run_now(conn.first_run).status == "succeeded"
    invoices = list(
        Invoice.objects.filter(partner=partner_a, status="open", total__gt=0).order_by("id")
    )
    s, secret = endpoint_factory(partner_a)
    return {
        "db": server.db,
        "invoices": invoices,
        "sender": Sender(s.endpoint_id, [secret]),
        "secret": secret,
    }


def deliver(world, partner, kinds, invoice, payment_id, *, duplicates=True):
    """Send `kinds` in this order; each is delivered twice (same webhook-id) and, when
    `duplicates`, once more under a new webhook-id (a processor re-send). The relay runs after
    every event, so intermediate states reach the sandbox too."""
    amount = str(invoice.total - invoice.credits)
    for kind in kinds:
        body = event(kind, payment_id, invoice, amount, version=ORDER[kind])
        eid = f"msg_{payment_id}_{kind}"
        assert world["sender"].send(body, event_id=eid).status_code == 202
        assert world["sender"].send(body, event_id=eid).status_code == 200
        if duplicates:
            assert world["sender"].send(body, event_id=eid + "_again").status_code == 202
        process_all(partner)
        writeback_drain(partner=partner)


def outcome(world, invoice, payment_id):
    invoice.refresh_from_db()
    payment = Payment.objects.get(processor_payment_id=payment_id)
    paid = world["db"].get_invoice(invoice.autotask_id)["paidDate"]
    # relative to the invoice's own amount, so different invoices compare
    due = invoice.total - invoice.credits
    return (
        payment.status,
        invoice.paid_here,
        due - invoice.outstanding,
        invoice.status,
        paid[:10] if paid else None,
    )


@pytest.mark.parametrize(
    "family", [("succeeded", "refunded", "deleted"), ("succeeded", "refunded")]
)
def test_every_order_ends_like_in_order_delivery(partner_a, world, family):
    perms = list(itertools.permutations(family))
    invoices = world["invoices"][: len(perms)]
    results = {}
    for i, (perm, invoice) in enumerate(zip(perms, invoices, strict=True)):
        deliver(world, partner_a, perm, invoice, f"pay_{len(family)}_{i}")
        results[perm] = outcome(world, invoice, f"pay_{len(family)}_{i}")
    in_order = results[family]
    final = family[-1]
    assert in_order[0] == final and in_order[3] == "open" and in_order[4] is None
    assert {perm: r for perm, r in results.items() if r != in_order} == {}
    # nothing was counted twice: one payment row per processor payment
    assert Payment.objects.filter(partner=partner_a).count() == len(perms)


def test_succeeded_alone_with_duplicates_is_counted_once(partner_a, world):
    invoice = world["invoices"][0]
    deliver(world, partner_a, ["succeeded"], invoice, "pay_once")
    status, paid_here, outstanding, inv_status, paid = outcome(world, invoice, "pay_once")
    due = invoice.total - invoice.credits
    assert (status, paid_here, outstanding, inv_status) == ("succeeded", due, due, "paid")
    assert paid == timezone.localdate().isoformat()
    patches = [
        r
        for r in world["db"].requests(entity="Invoices", method="PATCH")
        if r["body"]["id"] == invoice.autotask_id
    ]
    assert len(patches) == 1


@pytest.mark.parametrize("days", [4, 35])
def test_replay_days_later_resigned_is_200_and_a_no_op(partner_a, world, days):
    invoice = world["invoices"][0]
    amount = str(invoice.total - invoice.credits)
    bodies = [
        (f"msg_r_{k}", event(k, "pay_replay", invoice, amount, version=ORDER[k]))
        for k in ("succeeded", "refunded")
    ]
    for eid, body in bodies:
        world["sender"].send(body, event_id=eid)
    process_all(partner_a)
    writeback_drain(partner=partner_a)
    before = (counts(), outcome(world, invoice, "pay_replay"))
    patches_before = len(world["db"].requests(entity="Invoices", method="PATCH"))
    with time_machine.travel(timezone.now() + timedelta(days=days), tick=False):
        for eid, body in reversed(bodies):  # re-signed now, in the wrong order
            r = world["sender"].send(body, event_id=eid, ts=int(time.time()))
            assert r.status_code == 200 and r.json()["duplicate"] is True
        process_all(partner_a)
        writeback_drain(partner=partner_a)
    assert (counts(), outcome(world, invoice, "pay_replay")) == before
    assert len(world["db"].requests(entity="Invoices", method="PATCH")) == patches_before


def test_rotation_both_secrets_verify_during_overlap_and_old_one_is_rejected_after(
    partner_a, world
):
    """WH-3: 1,000 deliveries across the switch S1 → [S2, S1] → S2, none rejected; after the
    overlap, S1 alone is rejected."""
    old = world["secret"]
    invoice = world["invoices"][0]
    body = event("succeeded", "pay_rot", invoice, "0.01")
    endpoint_id = world["sender"].endpoint_id
    only_old = Sender(endpoint_id, [old])
    answers = [only_old.send(body).status_code for _ in range(300)]
    _, new = payment_settings.payment_settings_rotate_secret(
        partner=partner_a, overlap=timedelta(hours=1)
    )
    assert new != old
    both = Sender(endpoint_id, [new, old])  # the processor signs with both while rotating
    only_new = Sender(endpoint_id, [new])
    answers += [both.send(body).status_code for _ in range(400)]
    answers += [only_new.send(body).status_code for _ in range(300)]
    assert len(answers) == 1000
    assert [a for a in answers if a != 202] == []
    with time_machine.travel(timezone.now() + timedelta(hours=1, seconds=1), tick=False):
        assert only_old.send(body).status_code == 401
        assert only_new.send(body).status_code == 202
        assert both.send(body).status_code == 202
    assert PaymentSettings.objects.get(partner=partner_a).rejected_count == 1


def test_rotation_never_shows_the_secret_again(partner_a, world, client_a):
    page = client_a.get("/payments/settings/").content.decode()
    assert world["secret"] not in page
    response = client_a.post("/payments/settings/", {"action": "rotate"})
    assert response.status_code == 200  # shown on the answer itself, not after a redirect
    first = response.content.decode()
    new_secret = first.split('id="new-secret">')[1].split("<")[0]
    assert new_secret.startswith("whsec_") and new_secret != world["secret"]
    assert new_secret not in client_a.get("/payments/settings/").content.decode()


@pytest.mark.slow
def test_fifty_payments_every_order_of_three_events_end_like_in_order(partner_a, world):
    """WH-6 at full size: 50 payments x the 6 orders of {succeeded, refunded, deleted} = 300
    sequences, each event delivered twice under one id and once more under another. A
    sequence ends with its payment deleted, so its invoice is open again and can carry the
    next sequence; every one must end exactly as in-order delivery does."""
    family = ("succeeded", "refunded", "deleted")
    perms = list(itertools.permutations(family))
    invoices = world["invoices"]
    in_order, differing, sequences = None, [], 0
    for n in range(50):
        invoice = invoices[n % len(invoices)]
        for perm in perms:
            payment_id = f"pay_wh6_{n}_{''.join(k[0] for k in perm)}"
            deliver(world, partner_a, perm, invoice, payment_id)
            result = outcome(world, invoice, payment_id)
            if perm == family:
                in_order = in_order or result
            if result != (in_order or result):
                differing.append((payment_id, result))
            sequences += 1
    assert sequences == 300
    assert in_order[0] == "deleted" and in_order[3] == "open" and in_order[4] is None
    assert differing == []
    assert Payment.objects.filter(partner=partner_a).count() == 300
