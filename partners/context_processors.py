from datetime import datetime, timedelta

from django.utils import timezone

from integrations.models import AutotaskConnection
from integrations.selectors import connection_for
from sync.models import SyncState

from .tenancy import partner_for_user

STALE_AFTER = timedelta(hours=48)


def partner(request):
    current = partner_for_user(getattr(request, "user", None))
    return {"current_partner": current, "sync_banner": sync_banner(current) if current else None}


def sync_banner(partner) -> str | None:
    """Syncs must never stop silently (lessons from the field): a connection that needs
    attention, or no successful sync for 48 hours, is said on every page."""
    conn = connection_for(partner=partner)
    if conn is None or not conn.is_active:
        return None
    if conn.status == AutotaskConnection.Status.NEEDS_ATTENTION:
        # Plain words and the one thing to do; the raw text stays for ops (admin, API).
        reason = conn.last_error_plain or "Autotask refused our requests."
        return (
            f"Your Autotask connection needs attention: {reason} "
            "Scheduled syncs are paused until it is fixed."
        )
    state = SyncState.objects.filter(partner=partner).first()
    data_kinds = ("initial", "new_data", "unpaid")  # PDF prefetches do not count
    successes = (
        [v for k, v in (state.last_success or {}).items() if k in data_kinds] if state else []
    )
    last = max((datetime.fromisoformat(v) for v in successes), default=None)
    since = last or conn.connected_at
    if since and timezone.now() - since > STALE_AFTER:
        when = "ever" if last is None else f"since {last:%Y-%m-%d %H:%M} UTC"
        return f"No Autotask sync has succeeded {when}. We are looking into it; see Sync history."
    return None
