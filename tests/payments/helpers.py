"""Test helpers of the payments app."""

from __future__ import annotations

from django.utils import timezone

from payments.models import WritebackOutbox
from payments.services.writeback import SendResult, writeback_send


def writeback_drain(*, partner, max_rounds: int = 10, client_factory=None) -> list[SendResult]:
    """Send every due row of a partner in this process (tests)."""
    results = []
    for _ in range(max_rounds):
        ids = list(
            WritebackOutbox.objects.for_partner(partner)
            .filter(state=WritebackOutbox.State.PENDING, next_attempt_at__lte=timezone.now())
            .values_list("id", flat=True)
        )
        if not ids:
            break
        for outbox_id in ids:
            results.append(
                writeback_send(partner=partner, outbox_id=outbox_id, client_factory=client_factory)
            )
    return results
