"""Tenancy that fails closed.

- `PartnerRequiredMixin` (dashboard views) and `PartnerViewSetMixin` (API) resolve the request's
  partner once, from the signed-in user, and expose it as `self.partner` / `request.partner`.
- Partner-owned querysets start from `get_partner_queryset()`, which filters on that partner;
  the class-level queryset of API viewsets is `.none()` so a forgotten override returns nothing.
- Another partner's object is simply not in the queryset, so it answers 404, never 403.
- `PartnerTask` turns a partner id into the partner for Celery tasks (tasks take ids only).
"""

from __future__ import annotations

import logging

from celery.contrib.django.task import DjangoTask
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from .models import Partner

log = logging.getLogger(__name__)


def partner_for_user(user) -> Partner | None:
    if not user or not user.is_authenticated:
        return None
    return getattr(user, "partner", None)


class IsPartnerUser(BasePermission):
    """API access needs a signed-in user who belongs to a partner. Staff without a partner use
    the admin, not the partner API."""

    message = "This API is for partner users; your account belongs to no partner."

    def has_permission(self, request, view):
        partner = partner_for_user(request.user)
        if partner is None:
            return False
        request.partner = partner
        return True


class IsPartnerManager(IsPartnerUser):
    message = "Only the partner's owners and admins can do this."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.can_manage_partner


class PartnerRequiredMixin(LoginRequiredMixin):
    """For dashboard views: login required, the user's partner on `self.partner`."""

    manager_only = False

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        partner = partner_for_user(request.user)
        if partner is None:
            raise PermissionDenied("Your account belongs to no partner.")
        if self.manager_only and not request.user.can_manage_partner:
            raise PermissionDenied("Only the partner's owners and admins can do this.")
        self.partner = request.partner = partner
        return super().dispatch(request, *args, **kwargs)

    def get_partner_queryset(self, model):
        return model.objects.for_partner(self.partner)


class PartnerViewSetMixin:
    """For DRF views. Set `partner_model`; the queryset is always that model for this partner.
    Subclasses refine with `filter_partner_queryset()`, never by replacing the partner filter."""

    partner_model = None

    @property
    def partner(self) -> Partner:
        return self.request.partner

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular schema generation
            return self.partner_model.objects.none()
        qs = self.partner_model.objects.for_partner(self.partner)
        return self.filter_partner_queryset(qs)

    def filter_partner_queryset(self, queryset):
        return queryset


class PartnerTask(DjangoTask):
    """Celery base for per-partner tasks: the first argument is a partner id, the task body
    receives the Partner. A partner deleted meanwhile ends the task quietly (logged)."""

    abstract = True

    def __call__(self, partner_id, *args, **kwargs):
        partner = Partner.objects.filter(pk=partner_id).first()
        if partner is None:
            log.warning(
                "task %s: partner %s no longer exists; nothing to do", self.name, partner_id
            )
            return None
        return self.run(partner, *args, **kwargs)
