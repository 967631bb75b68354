"""Issue 16: every write-back PATCH that Autotask accepted is confirmed by reading the invoice
back (`GET /Invoices/{id}`), against the Autotask sandbox over real HTTP.

Whether `{"paidDate": null}` clears the field and how a date-time value is stored are
UNVERIFIED (shared/autotask/API.md): the sandbox's switches `paid_date_null` ("ignore") and
`paid_date_time` stand in for the other behaviours. Where a test needs the stored value in a
form no switch produces (a time part with a zone), or a fault on the GET only, it wraps the
relay's own client (`client_factory`) and changes the sandbox right after the PATCH returned:
every request still goes through the real client, limiter, fence and sandbox.
"""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from payments.models import ReconciliationDrift, WritebackAttempt, WritebackOutbox
from payments.selectors import drift_report
from payments.services import ledger, writeback
from payments.timeline import invoice_timeline

from . import test_writeback as base
from .helpers import writeback_drain
from .test_writeback import paid_date, patches, pay_in_full

synced = base.synced  # the same synced partner fixture

pytestmark = pytest.mark.django_db

NOT_APPLIED = ReconciliationDrift.Reason.WRITEBACK_NOT_APPLIED


def reads(db, invoice):
    """GETs of the invoice by id (the read-backs), in order."""
    return [
        r
        for r in db.requests(entity="Invoices", method="GET")
        if r["path"].lower().endswith(f"/invoices/{invoice.autotask_id}")
    ]


def invoice_log(db, invoice):
    """(method, status) of every request about this invoice, in order."""
    out = []
    for r in db.requests(entity="Invoices"):
        body = r.get("body") or {}
        own_patch = r["method"] == "PATCH" and body.get("id") == invoice.autotask_id
        own_get = r["method"] == "GET" and r["path"].lower().endswith(
            f"/invoices/{invoice.autotask_id}"
        )
        if own_patch or own_get:
            out.append((r["method"], r["status"]))
    return out


def after_patch(action):
    """A client factory whose PATCH is followed by `action()` (before the relay's read-back)."""
    real = writeback._client_for

    def client_factory(connection, **options):
        client = real(connection, **options)
        original = client.set_invoice_paid_date

        def patched(invoice_id, paid):
            result = original(invoice_id, paid)
            action()
            return result

        client.set_invoice_paid_date = patched
        return client

    return client_factory


def attempts(outbox):
    return list(
        WritebackAttempt.objects.filter(outbox=outbox)
        .order_by("id")
        .values_list("outcome", "error_kind", "paid_date")
    )


def send_until_settled(partner, outbox, clock, *, client_factory=None, rounds=10):
    """Run the relay for one row, honouring its backoff on a frozen clock; the outcomes."""
    outcomes = []
    for _ in range(rounds):
        result = writeback.writeback_send(
            partner=partner, outbox_id=outbox.pk, client_factory=client_factory
        )
        outcomes.append(result.outcome)
        if result.outcome != "retry":
            break
        assert result.retry_in is not None
        if result.retry_in > 0:  # the backoff holds: not sent again before its time
            early = writeback.writeback_send(partner=partner, outbox_id=outbox.pk)
            assert early.outcome == "not_due"
        clock.shift(result.retry_in + 0.01)
    return outcomes


# --- (a) the normal case ------------------------------------------------------------------


def test_accepted_patch_is_read_back_once_then_done(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    pay_in_full(partner_a, invoice)
    results = writeback_drain(partner=partner_a)
    assert [r.outcome for r in results] == ["sent"]
    # exactly one GET of the invoice, right after the PATCH, and nothing else about it
    assert invoice_log(db, invoice) == [("PATCH", 200), ("GET", 200)]
    log = db.requests()
    patch_at = next(i for i, r in enumerate(log) if r["method"] == "PATCH")
    assert [(r["method"], r["entity"]) for r in log[patch_at + 1 :]] == [("GET", "Invoices")]
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    today = timezone.localdate()
    assert (outbox.state, outbox.autotask_paid_date, outbox.last_error_kind) == (
        "done",
        today,
        "",
    )
    assert attempts(outbox) == [("sent", "", today)]
    assert not ReconciliationDrift.objects.filter(invoice=invoice).exists()


# --- (b) Autotask ignores the null --------------------------------------------------------


def test_ignored_null_is_retried_then_settled_as_drift_not_looped(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    db.set_switches(paid_date_null="ignore")  # UNVERIFIED behaviour: {"paidDate": null} ignored
    today = timezone.localdate()
    payment = pay_in_full(partner_a, invoice)
    assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
    outbox = WritebackOutbox.objects.get(invoice=invoice)

    ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        outcomes = send_until_settled(partner_a, outbox, clock)
        assert outcomes == ["retry"] * (writeback.MAX_READBACK_MISMATCHES - 1) + ["not_applied"]
        # settled: nothing left to send, however long we wait
        clock.shift(3600)
        assert writeback_drain(partner=partner_a) == []
        later = timezone.now()

    clears = [p for p in patches(db, invoice) if p["body"]["paidDate"] is None]
    assert len(clears) == writeback.MAX_READBACK_MISMATCHES  # each accepted (200)
    assert {p["status"] for p in clears} == {200}
    assert len(reads(db, invoice)) == 1 + writeback.MAX_READBACK_MISMATCHES
    assert paid_date(db, invoice) == today.isoformat()  # Autotask still shows it

    rows = attempts(outbox)
    assert rows[0] == ("sent", "", today)
    assert rows[1:] == [("mismatch", "readback_mismatch", None)] * 3
    errors = list(
        WritebackAttempt.objects.filter(outbox=outbox, outcome="mismatch").values_list(
            "error", flat=True
        )
    )
    assert all(f"shows paid date {today.isoformat()}, not none" in e for e in errors), errors

    outbox.refresh_from_db()
    assert (outbox.state, outbox.desired_paid_date, outbox.autotask_paid_date) == (
        "done",
        None,
        today,
    )
    assert outbox.sent_version == outbox.version and outbox.last_error_kind == "not_applied"
    drift = ReconciliationDrift.objects.get(invoice=invoice)
    assert (drift.reason, drift.autotask_value, drift.ledger_value, drift.resolved_at) == (
        NOT_APPLIED,
        today.isoformat(),
        "",
        None,
    )

    # the drift report and the invoice timeline say it in words
    [entry] = [e for e in drift_report(partner=partner_a) if e.reason == NOT_APPLIED]
    assert entry.invoice == invoice.pk and "set it to none" in entry.action
    titles = [e.title for e in invoice_timeline(partner=partner_a, invoice=invoice)]
    assert titles.count("Autotask update accepted but not applied") == 3
    assert "Autotask accepted our paid date but did not apply it" in titles

    # a later write-back whose read-back matches resolves it
    invoice.refresh_from_db()
    with time_machine.travel(later, tick=False):
        earlier = timezone.localdate() - timedelta(days=3)
        ledger.payment_record(
            partner=partner_a,
            invoice_id=invoice.pk,
            amount=invoice.outstanding,
            received_at=timezone.now() - timedelta(days=3),
        )
        assert [r.outcome for r in writeback_drain(partner=partner_a)] == ["sent"]
    assert paid_date(db, invoice) == earlier.isoformat()
    drift.refresh_from_db()
    assert drift.resolved_at is not None


def test_a_mismatch_that_clears_up_is_done_without_drift(partner_a, synced):
    """Two ignored nulls, then Autotask applies it: done at the third try, no drift row."""
    db, invoice = synced["db"], synced["invoices"][0]
    db.set_switches(paid_date_null="ignore")
    payment = pay_in_full(partner_a, invoice)
    writeback_drain(partner=partner_a)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    ledger.payment_delete(partner=partner_a, payment_id=payment.pk)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        first = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
        assert first.outcome == "retry"
        outbox.refresh_from_db()
        assert outbox.state == "pending" and outbox.last_error_kind == "readback_mismatch"
        assert outbox.next_attempt_at >= timezone.now() + timedelta(seconds=first.retry_in)
        db.set_switches(paid_date_null="clear")
        clock.shift(first.retry_in + 0.01)
        assert writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk).outcome == "sent"
    outbox.refresh_from_db()
    assert (outbox.state, outbox.autotask_paid_date, outbox.attempts) == ("done", None, 0)
    assert paid_date(db, invoice) is None
    assert [a[0] for a in attempts(outbox)] == ["sent", "mismatch", "sent"]
    assert not ReconciliationDrift.objects.filter(invoice=invoice).exists()


# --- (c) the date part decides ------------------------------------------------------------


@pytest.mark.parametrize(
    ("switches", "shift_days"),
    [
        ({"paid_date_time": "keep_time"}, 0),
        ({"paid_date_time": "utc_date"}, 0),
        ({"paid_date_time": "local_date", "tenant_utc_offset_hours": 5.0}, 0),
        # the tenant is at UTC-5: our midnight-UTC value lands on the day before
        ({"paid_date_time": "local_date", "tenant_utc_offset_hours": -5.0}, -1),
    ],
    ids=["keep_time", "utc_date", "local_date_east", "local_date_west_shifted"],
)
def test_stored_date_switches_match_on_the_date_part(partner_a, synced, switches, shift_days):
    db, invoice = synced["db"], synced["invoices"][0]
    db.set_switches(**switches)
    today = timezone.localdate()
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    result = writeback.writeback_send(partner=partner_a, outbox_id=outbox.pk)
    shown = today + timedelta(days=shift_days)
    assert paid_date(db, invoice) == shown.isoformat()
    outbox.refresh_from_db()
    if shift_days == 0:
        assert result.outcome == "sent" and outbox.state == "done"
        assert [a[0] for a in attempts(outbox)] == ["sent"]
    else:
        assert result.outcome == "retry" and outbox.state == "pending"
        [(outcome, kind, error)] = WritebackAttempt.objects.filter(outbox=outbox).values_list(
            "outcome", "error_kind", "error"
        )
        assert (outcome, kind) == ("mismatch", "readback_mismatch")
        assert f"shows paid date {shown.isoformat()}, not {today.isoformat()}" in error


@pytest.mark.parametrize(
    ("stored", "matches"),
    [
        ("{d}T00:00:00.000Z", True),
        ("{d}", True),  # date only
        ("{d}T13:45:00", True),  # a time part, no zone
        ("{d}T13:45:00.000-05:00", True),  # a time part and a zone
        ("{d}T23:59:59.9999999+02:00", True),  # .NET's 7-digit fraction
        ("{before}T19:00:00.000-05:00", False),  # the same instant as ours, another date shown
        ("{after}T00:00:00.000Z", False),
    ],
)
def test_stored_value_forms_compare_by_date_part(partner_a, synced, stored, matches):
    db, invoice = synced["db"], synced["invoices"][0]
    today = timezone.localdate()
    value = stored.format(
        d=today.isoformat(),
        before=(today - timedelta(days=1)).isoformat(),
        after=(today + timedelta(days=1)).isoformat(),
    )

    def autotask_stores_it_so():  # stands in for an Autotask that keeps this form
        db.table("Invoices").update(invoice.autotask_id, {"paidDate": value})

    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    result = writeback.writeback_send(
        partner=partner_a, outbox_id=outbox.pk, client_factory=after_patch(autotask_stores_it_so)
    )
    assert db.get_invoice(invoice.autotask_id)["paidDate"] == value  # what the GET answered
    assert len(reads(db, invoice)) == 1
    outbox.refresh_from_db()
    outcome = WritebackAttempt.objects.get(outbox=outbox).outcome
    if matches:
        assert (result.outcome, outbox.state, outcome) == ("sent", "done", "sent")
        assert outbox.autotask_paid_date == today
    else:
        assert (result.outcome, outbox.state, outcome) == ("retry", "pending", "mismatch")
        assert outbox.autotask_paid_date is None


# --- (d) the read-back itself fails -------------------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500_threshold", "503_html", "500_plain"])
def test_failed_read_back_leaves_the_row_done_without_a_second_patch(partner_a, synced, fault):
    db, invoice = synced["db"], synced["invoices"][0]
    today = timezone.localdate()
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)

    def fail_the_read_back():
        db.fail_next(1, fault, entity="Invoices", retry_after=120)

    with time_machine.travel(timezone.now(), tick=False) as clock:
        result = writeback.writeback_send(
            partner=partner_a, outbox_id=outbox.pk, client_factory=after_patch(fail_the_read_back)
        )
        assert (result.outcome, result.retry_in) == ("sent", None)
        clock.shift(600)  # past any Retry-After: still nothing to send
        assert writeback_drain(partner=partner_a) == []
    status = {"429": 429, "500_threshold": 500, "503_html": 503, "500_plain": 500}[fault]
    assert invoice_log(db, invoice) == [("PATCH", 200), ("GET", status)]
    outbox.refresh_from_db()
    assert (outbox.state, outbox.autotask_paid_date, outbox.attempts) == ("done", today, 0)
    [(outcome, kind, _)] = attempts(outbox)
    assert outcome == "sent" and kind.startswith("readback:"), kind
    assert paid_date(db, invoice) == today.isoformat()
    assert not ReconciliationDrift.objects.filter(invoice=invoice).exists()


# --- (e) the read-back goes through the claim fence ----------------------------------------


def test_a_relay_that_lost_its_claim_after_the_patch_sends_no_get(partner_a, synced):
    db, invoice = synced["db"], synced["invoices"][0]
    pay_in_full(partner_a, invoice)
    outbox = WritebackOutbox.objects.get(invoice=invoice)
    taken_over = []

    def another_relay_takes_the_claim():
        # the relay is paused here, past its lease; another relay claims the row
        with time_machine.travel(timezone.now() + writeback.lease() + timedelta(seconds=1)):
            token = uuid.uuid4()
            assert writeback._claim(partner_a, outbox.pk, token)
            taken_over.append(token)

    result = writeback.writeback_send(
        partner=partner_a,
        outbox_id=outbox.pk,
        client_factory=after_patch(another_relay_takes_the_claim),
    )
    assert result.outcome == "not_claimed"
    assert invoice_log(db, invoice) == [("PATCH", 200)]  # no GET
    outbox.refresh_from_db()
    assert (outbox.state, outbox.claim_token) == ("sending", taken_over[0])
    assert attempts(outbox) == [("sent", "readback:lease_lost", timezone.localdate())]
