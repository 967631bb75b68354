"""Sign-in throttling for every login: the dashboard, the admin and `POST /api/v1/auth/token/`
(issue 18), with django-axes (its database handler; settings in config/settings/base.py
"Sign-in lockout").

- Locked after `AXES_FAILURE_LIMIT` (20) failures per username, from any address, and
  separately per client address, for any username: guessing one account from many
  addresses, and many accounts from one address, are both stopped.
- The lockout lasts `AXES_COOLOFF_TIME` (LOGIN_LOCKOUT_MINUTES, 15) from the failure that
  locked it; attempts during the lockout, right or wrong, are refused and do not extend it (so
  the message stays true). A success before the limit resets that username's count.
- Unknown usernames are counted and locked exactly like real ones, and the wrong-password
  and locked-out answers are the same for both: nothing tells whether an account exists.
- Ops unlock in the admin (Sign-in lockouts → "Unlock", partners/admin.py).
- The client address is REMOTE_ADDR, or behind `TRUSTED_PROXY_COUNT` proxies the address
  that many entries from the right of X-Forwarded-For (the one our last proxy saw); never a
  client-supplied leftmost entry.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import JsonResponse

LOCKOUT_CODE = "login_locked_out"


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return f"Too many failed sign-ins. Try again in {minutes} minutes or ask your admin to unlock."


def is_locked_out(request) -> bool:
    """After a failed `authenticate(request, …)`: was it refused because of a lockout?"""
    return bool(getattr(request, "axes_locked_out", False))


class LockoutBackend(AxesStandaloneBackend):
    """Axes' check, first in AUTHENTICATION_BACKENDS. Every HTTP sign-in passes the request;
    a call without one (the test client's login(), a shell) is not an HTTP attempt to count,
    so it goes on to the next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_json_response() -> JsonResponse:
    response = JsonResponse(
        {"code": LOCKOUT_CODE, "detail": lockout_message()},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE, called by axes' middleware for a locked-out attempt. The login
    forms already show `lockout_message()` (partners/forms.py): keep their page, with 429.
    The API gets JSON with a `code`."""
    if request.path.startswith("/api/") or original_response is None:
        return lockout_json_response()
    original_response.status_code = settings.AXES_HTTP_RESPONSE_CODE
    original_response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return original_response


def client_ip(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: see the module docstring."""
    remote = request.META.get("REMOTE_ADDR")
    count = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < count:
        return remote
    return forwarded[-count]
