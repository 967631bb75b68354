"""Celery tasks of the tenant layer: thin interfaces over its services."""

from celery import shared_task

from .idempotency import idempotency_keys_purge


# The name predates the store's move from payments: beat rows and routes use it.
@shared_task(name="payments.idempotency.purge")
def purge_idempotency_keys():
    return idempotency_keys_purge()
