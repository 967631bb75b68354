"""Celery tasks of the payments app: thin interfaces over services. Tasks take ids only (never a
secret or a body) and are enqueued with transaction.on_commit."""

import logging

from celery import shared_task

from partners.tenancy import PartnerTask

from .services import webhook_events, writeback

log = logging.getLogger(__name__)


@shared_task(base=PartnerTask, bind=True, name="payments.webhooks.process", max_retries=5)
def process_webhook_event(self, partner, event_id):
    try:
        event = webhook_events.webhook_event_process(partner=partner, event_id=event_id)
    except Exception as exc:  # a database hiccup: the event row is still "received"
        log.exception("webhook event %s: processing failed, will retry", event_id)
        # Countdowns stay under half the broker's visibility timeout (RELIABILITY §2, CQ-1).
        countdown = min(60, 2**self.request.retries, writeback.max_countdown())
        raise self.retry(exc=exc, countdown=countdown) from exc
    return event.status if event else None


@shared_task(name="payments.webhooks.rematch_stale")
def rematch_stale_events():
    """Every few minutes: events still "received" long after arrival (their task was lost by the
    broker) are enqueued again. Parked ones wait for the next sync of their partner."""
    return webhook_events.webhook_events_requeue_stale()


# --- write-back (payments/services/writeback.py) ----------------------------------------------


@shared_task(base=PartnerTask, bind=True, name="payments.writeback.send")
def send(self, partner, outbox_id):
    result = writeback.writeback_send(partner=partner, outbox_id=outbox_id)
    if result.retry_in is not None and result.retry_in <= writeback.max_countdown():
        # A little past the due time so the claim finds the row due, but never past half the
        # visibility timeout (a message arriving a moment early answers "not_due" and re-arms).
        countdown = min(result.retry_in + 0.5, writeback.max_countdown())
        send.apply_async((partner.id, outbox_id), countdown=countdown)
    return result.outcome


@shared_task(name="payments.writeback.sweep")
def sweep():
    return writeback.writeback_sweep()
