"""Celery tasks of the payments app: thin interfaces over services. Tasks take ids only (never a
secret or a body) and are enqueued with transaction.on_commit."""

import logging

from celery import shared_task

from partners.tenancy import PartnerTask

from .services import webhook_events, writeback

log = logging.getLogger(__name__)


@shared_task(
    base=PartnerTask,
    bind=True,
    name="payments.webhooks.process",
    max_retries=webhook_events.MAX_PROCESSING_FAILURES,
)
def process_webhook_event(self, partner, event_id):
    """Process the event `event_id`, then drain the partner's other received events (up to
    webhook_events.BATCH_SIZE, claimed with SKIP LOCKED). One message is still published per
    event (the acknowledgement path is unchanged); under a storm the first task drains the
    backlog and the later ones find their event processed: a few statements, nothing else.
    The write-backs of the whole batch go out in one `payments.writeback.send_batch` task
    instead of one task per invoice (README "Payment throughput")."""
    with writeback.sends_deferred():
        try:
            event = webhook_events.webhook_event_process(partner=partner, event_id=event_id)
        except Exception as exc:  # counted on the event; the last one failed it for ops
            if webhook_events.webhook_event_failed(partner=partner, event_id=event_id):
                log.exception("webhook event %s: processing failed, parked for ops", event_id)
                return "failed"
            log.exception("webhook event %s: processing failed, will retry", event_id)
            # Backoff 2, 4, 8, 16 s; countdowns stay under half the broker's visibility timeout
            # (RELIABILITY §2, CQ-1).
            countdown = min(60, 2 ** (self.request.retries + 1), writeback.max_countdown())
            raise self.retry(exc=exc, countdown=countdown) from exc
        batch = webhook_events.webhook_events_drain(partner=partner)
    for failed_id in batch.failed:
        # Its own message may have run already: retry it on its own, counted on the event
        # (failures), so the bound of MAX_PROCESSING_FAILURES holds as for a single event.
        process_webhook_event.apply_async(
            (partner.id, failed_id), countdown=min(2.0, writeback.max_countdown())
        )
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
    _rearm(partner, outbox_id, result)
    return result.outcome


@shared_task(base=PartnerTask, bind=True, name="payments.writeback.send_batch")
def send_batch(self, partner, outbox_ids):
    """The write-backs of one webhook batch (ids only), sent in turn by one task."""
    results, rest = writeback.writeback_send_batch(partner=partner, outbox_ids=outbox_ids)
    for outbox_id, result in results:
        _rearm(partner, outbox_id, result)
    if rest:  # out of this task's time: the rest in a new one
        send_batch.delay(partner.id, rest)
    return [result.outcome for _, result in results]


def _rearm(partner, outbox_id, result) -> None:
    if result.retry_in is not None and result.retry_in <= writeback.max_countdown():
        # A little past the due time so the claim finds the row due, but never past half the
        # visibility timeout (a message arriving a moment early answers "not_due" and re-arms).
        countdown = min(result.retry_in + 0.5, writeback.max_countdown())
        send.apply_async((partner.id, outbox_id), countdown=countdown)


@shared_task(name="payments.writeback.sweep")
def sweep():
    return writeback.writeback_sweep()
