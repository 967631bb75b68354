"""The periodic notification check (notifications/services.py); beat runs it every 15 minutes
(notifications/migrations/0002_periodic_task.py)."""

from celery import shared_task

from .services import notifications_send_due


@shared_task(name="notifications.check")
def check():
    return notifications_send_due()
