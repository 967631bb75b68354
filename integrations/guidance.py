"""What a failure with Autotask means for the partner, in plain words, with the one thing to do.

Partners never see the client's raw text ("Autotask POST /zones/…/PaymentTerms/query returned
HTTP 500: …"): that stays in `last_error_message` / `SyncRun.error_message` for ops (admin,
logs). Keyed by the client's error kinds (integrations/autotask/errors.py) and the sync's own
kinds; a run's auth failures are stored as "auth:<kind>", both spellings are understood.
`support_hint` adds the run id to quote when the one action is "contact support".
"""

from __future__ import annotations

SUPPORT = "If it keeps happening, contact support"

PLAIN_FAILURES = {
    # Autotask refused the API user (the sync pauses the partner on these).
    "unknown_user": (
        "Autotask no longer knows the API username. Check the API user in Autotask, then "
        "enter its Username (Key) again under Integrations → Edit connection."
    ),
    "bad_secret": (
        "Autotask refused the API user's password (Secret). Generate a new secret on the API "
        "user in Autotask and save it under Integrations → Edit connection."
    ),
    "bad_integration_code": (
        "Autotask refused our integration. On the API user in Autotask, set Integration Vendor "
        "to PaySync, save, then click Test connection."
    ),
    "permission": (
        "The Autotask API user lacks permissions. In Autotask, set its Security Level to "
        "'API User (system)', save, then click Test connection."
    ),
    # Autotask answered, but not with what we asked for.
    "request": (
        "Autotask refused one of our requests, so the sync stopped there; nothing after that "
        "point was changed. This is most often a permission missing on the API user: check "
        "that its Security Level is 'API User (system)', then click Retry now."
    ),
    "not_found": (
        "Autotask answered 'not found' to one of our requests, so the sync stopped there. "
        "Click Retry now."
    ),
    "response": (
        "Autotask sent an answer we could not read, so the sync stopped there and nothing was "
        "changed from it. Click Retry now."
    ),
    "foreign_origin": (
        "Autotask pointed us to another server, so we stopped there to keep your credentials "
        "safe. Click Retry now."
    ),
    # Autotask busy or unreachable: the sync waits and retries by itself.
    "throttled": (
        "Autotask is limiting requests for your database right now. The sync waits for "
        "Autotask's limit and continues by itself; nothing to do."
    ),
    "budget": (
        "We used this hour's share of your Autotask request limit. The sync continues by "
        "itself when the hour is over; nothing to do."
    ),
    "transient": (
        "Autotask could not be reached. The sync retries by itself; you can also click Retry "
        "now in a few minutes."
    ),
    "server_error": (
        "Autotask had an error on its side. The sync retries by itself; you can also click "
        "Retry now in a few minutes."
    ),
    "timeout": (
        "Autotask did not answer in time. The sync retries by itself; you can also click Retry "
        "now in a few minutes."
    ),
    # Kinds a Test connection records (integrations/services.py MESSAGES codes).
    "unreachable": (
        "Autotask could not be reached or did not answer in time. Click Test connection again "
        "in a few minutes."
    ),
    "rate_limited": (
        "Autotask is limiting requests for your database right now. Wait for Autotask's limit "
        "(a few minutes), then click Test connection."
    ),
    "unexpected": "Autotask gave an unexpected answer. Click Test connection again later.",
    "different_database": (
        "The stored API user now reaches a different Autotask database. Enter the API user of "
        "the database you connected under Integrations → Edit connection."
    ),
    # Ours.
    "credentials": (
        "We could not use the stored Autotask credentials. Reconnect Autotask: enter them "
        "again under Integrations → Edit connection; a catch-up sync starts when they work."
    ),
    "worker_lost": "The sync stopped on our side and was given up. Click Retry now.",
    "internal": "The sync failed because of an error on our side. Click Retry now.",
    "not_connected": "Autotask was not connected when the sync started, so nothing was fetched.",
}

# The action is ours to take when it keeps failing: the run id lets support find the details.
_SUPPORT_KINDS = frozenset(
    {"request", "not_found", "response", "foreign_origin", "internal", "worker_lost"}
)
FALLBACK = "The sync with Autotask failed. Click Retry now."


def plain_failure(kind: str, *, run_id: int | None = None) -> str:
    """The failure of this kind for the partner: what happened and the one thing to do."""
    bare = (kind or "").removeprefix("auth:")
    text = PLAIN_FAILURES.get(bare, FALLBACK)
    if run_id is not None and (bare in _SUPPORT_KINDS or bare not in PLAIN_FAILURES):
        text += f" {SUPPORT} and quote run #{run_id}."
    return text
