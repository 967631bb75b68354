"""Shared by the manual-sync tests: a stand-in for the Celery task and a connection made
without calling Autotask."""

import threading

from django.utils import timezone

from integrations.models import AutotaskConnection


class FakeRunSync:
    """Stands in for the Celery task: records what would be enqueued (no broker)."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def delay(self, partner_id, run_id):
        with self.lock:
            self.calls.append((partner_id, run_id))


def connect_directly(partner, **kwargs):
    return AutotaskConnection.objects.create(
        partner=partner,
        account_email="ops@example.test",
        username="api-user",
        secret="api-secret",
        username_last4="user",
        connected_at=timezone.now(),
        **kwargs,
    )
