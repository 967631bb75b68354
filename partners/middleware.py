"""Every time a partner's user sees in the dashboard is in the partner's time zone (Preferences;
issue 17): the zone is active for the whole request, template rendering included (a
TemplateResponse renders inside the middleware chain). Staff and anonymous users see UTC. The
API always speaks ISO 8601 with an offset, so it is unaffected in meaning."""

from __future__ import annotations

from django.utils import timezone

from .tenancy import partner_for_user


class PartnerTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        partner = partner_for_user(getattr(request, "user", None))
        if partner is None:
            return self.get_response(request)
        timezone.activate(partner.zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
