"""Admin helpers shared by every app's admin (the ops console, ops/admin.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from config.api import DomainError
from sync.selectors import action_for
from sync.services.manual import sync_run_ops

OPS_PERMISSION = "partners.run_ops_actions"


class OpsActionsMixin:
    """`@admin.action(permissions=["ops"])` actions: support staff and superusers."""

    def has_ops_permission(self, request) -> bool:
        return request.user.has_perm(OPS_PERMISSION)


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def changelist_url(model, **params) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def partner_link(obj) -> str:
    """The row's partner as a link to the partner's ops page (needs `partner` selected)."""
    if obj.partner_id is None:
        return "—"
    return format_html('<a href="{}">{}</a>', change_url(obj.partner), obj.partner)


class PartnerColumnMixin:
    """A "Partner" column linking to the partner's ops page (list_display "partner_name")."""

    @admin.display(description="Partner", ordering="partner__name")
    def partner_name(self, obj):
        return partner_link(obj)


def run_ops_syncs(model_admin, request, targets, kind: str) -> None:
    """Start an ops sync (trigger "ops", no cooldown; sync/services/manual.py `sync_run_ops`) for
    each (partner, object to log on) pair. The run records who asked (`requested_by`)."""
    title = action_for(kind).title
    for partner, logged in targets:
        try:
            run = sync_run_ops(partner=partner, kind=kind, user=request.user)
        except DomainError as exc:
            model_admin.log_change(request, logged, f"{title}: not started ({exc.code}).")
            model_admin.message_user(request, f"{partner}: {exc.message}", messages.ERROR)
            continue
        model_admin.log_change(request, logged, f"{title}: started ops sync run #{run.pk}.")
        model_admin.message_user(request, f"{partner}: {title} started (run #{run.pk}).")
