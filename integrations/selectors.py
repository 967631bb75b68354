"""Reads of the connection layer, always scoped to one partner."""

from __future__ import annotations

from .models import AutotaskConnection


def connection_for(*, partner) -> AutotaskConnection | None:
    """The partner's Autotask connection (one per partner), or None when never connected.
    `partner` may be a Partner or its id."""
    return AutotaskConnection.objects.for_partner(partner).first()


def active_connection_for(*, partner) -> AutotaskConnection | None:
    """The connection when it can be used now (connected or needing attention), else None."""
    connection = connection_for(partner=partner)
    return connection if connection is not None and connection.is_active else None
