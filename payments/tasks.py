"""Celery tasks of the payments app: thin interfaces over services. Tasks take ids only (never a
secret or a body) and are enqueued with transaction.on_commit."""

import logging

from celery import shared_task

from partners.tenancy import PartnerTask

from . import services
from .writeback import max_countdown, send, sweep  # noqa: F401  (send, sweep: registered here)

log = logging.getLogger(__name__)


@shared_task(base=PartnerTask, bind=True, name="payments.webhooks.process", max_retries=5)
def process_webhook_event(self, partner, event_id):
    try:
        event = services.webhook_event_process(partner=partner, event_id=event_id)
    except Exception as exc:  # a database hiccup: the event row is still "received"
        log.exception("webhook event %s: processing failed, will retry", event_id)
        # Countdowns stay under half the broker's visibility timeout (RELIABILITY §2, CQ-1).
        countdown = min(60, 2**self.request.retries, max_countdown())
        raise self.retry(exc=exc, countdown=countdown) from exc
    return event.status if event else None


@shared_task(name="payments.webhooks.rematch_stale")
def rematch_stale_events():
    """Every few minutes: events still "received" long after arrival (their task was lost by the
    broker) are enqueued again. Parked ones wait for the next sync of their partner."""
    return services.webhook_events_requeue_stale()


@shared_task(name="payments.idempotency.purge")
def purge_idempotency_keys():
    return services.idempotency_keys_purge()
