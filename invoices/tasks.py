"""Invoice upkeep beat runs (invoices/migrations/0005_open_balances.py)."""

from celery import shared_task

from .services import open_balances_fold


@shared_task(name="invoices.fold_open_balances")
def fold_open_balances():
    return open_balances_fold()
