import functools
import re
import uuid
import zoneinfo

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import FormView, TemplateView

from config.api import DomainError
from payments.overview import partner_overview
from sync.selectors import partner_zone

from . import idempotency
from .models import ApiToken, User
from .tenancy import PartnerRequiredMixin
from .tokens import api_token_create, api_token_revoke, token_ttl_days


class PartnerPageMixin(PartnerRequiredMixin):
    """A dashboard page of the signed-in partner (with a TemplateView, FormView, …). `nav`
    marks the active navigation entry."""

    nav = ""
    title = ""

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.update(nav=self.nav, title=self.title, partner=self.partner)
        return ctx


class PartnerPageView(PartnerPageMixin, TemplateView):
    pass


class PartnerFormView(PartnerPageMixin, FormView):
    """A dashboard form page: POST, then redirect (and a message) on success; the form again
    with its field errors otherwise, nothing stored.

    Each rendering carries a one-time `submit_token`, used as an Idempotency-Key (the same
    per-partner store as the API's, partners/idempotency.py): a double click, or a retried POST,
    creates one row and is sent where the first went. A POST with errors frees its token for the
    corrected one."""

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["submit_token"] = _submit_token(self.request) or uuid.uuid4().hex
        return ctx

    def post(self, request, *args, **kwargs):
        token = _submit_token(request)
        if token is None:
            return super().post(request, *args, **kwargs)
        key = f"form:{token}"
        fingerprint = idempotency.request_fingerprint("FORM", request.path, token.encode())
        try:
            saved = idempotency.idempotency_key_begin(
                partner=self.partner, key=key, fingerprint=fingerprint
            )
        except DomainError:  # the first POST is still being saved
            messages.info(request, "This form is already being saved.")
            return HttpResponseRedirect(request.path)
        if saved is not None:
            messages.info(request, "Already created (the form was sent twice).")
            return HttpResponseRedirect(saved.response_body["location"])
        try:
            with transaction.atomic():  # the row and the saved answer commit together
                response = super().post(request, *args, **kwargs)
                if response.status_code == 302:
                    idempotency.idempotency_key_finish(
                        partner=self.partner, key=key, status=302, body={"location": response.url}
                    )
        except Exception:
            idempotency.idempotency_key_release(partner=self.partner, key=key)
            raise
        if response.status_code != 302:
            idempotency.idempotency_key_release(partner=self.partner, key=key)
        return response


def _submit_token(request) -> str | None:
    token = request.POST.get("submit_token", "")
    return token if re.fullmatch(r"[0-9a-f]{32}", token) else None


class DashboardHomeView(PartnerPageView):
    template_name = "dashboard/home.html"
    nav = "home"
    title = "Overview"

    def dispatch(self, request, *args, **kwargs):
        # Ops staff have no partner: the home page sends them to their console, not a 403.
        user = request.user
        if user.is_authenticated and user.is_staff and user.partner_id is None:
            return HttpResponseRedirect(reverse("admin:index"))
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["team"] = self.get_partner_queryset(User).order_by("username")
        ctx["o"] = partner_overview(partner=self.partner)
        ctx["zone"] = partner_zone(self.partner)
        return ctx


class TimeZoneView(PartnerRequiredMixin, View):
    """POST `time_zone` (an IANA name, e.g. Europe/Berlin): the partner's time zone, used for
    every time the dashboard shows (partners/middleware.py). Owners and admins only."""

    manager_only = True

    def post(self, request):
        name = (request.POST.get("time_zone") or "").strip()
        if name not in time_zone_choices():
            messages.error(request, "Choose a time zone from the list (for example Europe/Berlin).")
        else:
            self.partner.time_zone = name
            self.partner.save(update_fields=["time_zone"])
            messages.success(request, f"Times are now shown in {name}.")
        return HttpResponseRedirect(reverse("dashboard:preferences") + "#time-zone")


@functools.cache
def time_zone_choices() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class ApiTokensView(PartnerPageView):
    """Preferences → API tokens: your own tokens (name, start of the token, created, expires,
    last used), a form to create one and a Revoke button each. A new token is shown on the
    answer to the POST that created it, once: never put in the session or a message."""

    template_name = "partners/tokens.html"
    nav = "api-tokens"
    title = "API tokens"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["tokens"] = self.get_partner_queryset(ApiToken).filter(
            user=self.request.user, revoked_at__isnull=True
        )
        ctx["ttl_days"] = token_ttl_days()
        ctx["now"] = timezone.now()
        return ctx

    def post(self, request):
        name = (request.POST.get("name") or "").strip()
        days_text = (request.POST.get("expires_in_days") or "").strip()
        errors = []
        if not name or len(name) > 100:
            errors.append("Give the token a name (up to 100 characters).")
        days = None
        if days_text:
            days = int(days_text) if days_text.isdigit() else 0
            if not 1 <= days <= token_ttl_days():
                errors.append(f"Expiry: 1 to {token_ttl_days()} days.")
        if errors:
            ctx = self.get_context_data(errors=errors, form_name=name)
            return self.render_to_response(ctx, status=400)
        token, raw = api_token_create(user=request.user, name=name, expires_in_days=days)
        ctx = self.get_context_data(new_token=token, new_token_value=raw)
        response = self.render_to_response(ctx)
        response["Cache-Control"] = "no-store"
        return response


class ApiTokenRevokeView(PartnerRequiredMixin, View):
    """POST: revoke one of your own tokens (another user's id is a 404)."""

    def post(self, request, token_id):
        token = get_object_or_404(
            ApiToken.objects.for_partner(self.partner).filter(
                user=request.user, revoked_at__isnull=True
            ),
            pk=token_id,
        )
        api_token_revoke(token)
        messages.success(request, f"Revoked “{token.name}”. It no longer works.")
        return HttpResponseRedirect(reverse("dashboard:api-tokens"))
