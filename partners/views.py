import functools
import re
import uuid
import zoneinfo

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.views import View
from django.views.generic import FormView, TemplateView

from config.api import DomainError
from payments.overview import partner_overview
from sync.selectors import partner_zone

from . import idempotency
from .models import User
from .tenancy import PartnerRequiredMixin


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
