"""Admin helpers shared by every app's admin (the ops console, ops/admin.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from config.api import DomainError
from config.encryption import SecretUnavailable
from integrations.models import AutotaskConnection
from integrations.services import ConnectError, autotask_verify
from sync.selectors import action_for
from sync.services.manual import sync_run_ops

OPS_PERMISSION = "partners.run_ops_actions"

# Verify failures that mean the stored API user no longer works (as the sync treats auth errors).
AUTH_FAILURES = {"unknown_user", "bad_secret", "bad_integration_code", "permission"}


class OpsActionsMixin:
    """`@admin.action(permissions=["ops"])` actions: support staff and superusers."""

    def has_ops_permission(self, request) -> bool:
        return request.user.has_perm(OPS_PERMISSION)


class NoBulkDeleteMixin:
    """No "Delete selected …" action: deleting these cascades into a partner's synced data and
    payments, one wrong tick away. A single object can still be deleted from its own page by
    whoever has the delete permission (Django then lists everything that goes with it)."""

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class ObjectOpsButtonsMixin(OpsActionsMixin):
    """The ops actions as buttons on an object's change page (templates/admin/_ops_buttons.html,
    included by the change_form overrides). Each is a POST with the CSRF token to
    `<id>/ops/<name>/`, checked like the list actions (`partners.run_ops_actions`), and runs
    the same code as the list action of that name: `getattr(self, name)(request, queryset)`
    with a queryset of this one object, so messages and log entries are the same too.

    Subclasses set `object_ops_buttons = [(action name, label), …]` and may narrow them per
    object with `get_object_ops_buttons(request, obj)`."""

    object_ops_buttons: list[tuple[str, str]] = []

    def get_object_ops_buttons(self, request, obj) -> list[tuple[str, str]]:
        return list(self.object_ops_buttons)

    def get_urls(self):
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_ops"
        view = self.admin_site.admin_view(self.object_ops_view)
        return [path("<path:object_id>/ops/<str:action>/", view, name=name), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None and self.has_ops_permission(request):
            opts = self.model._meta
            extra_context["ops_buttons"] = [
                (
                    reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_ops",
                        args=[obj.pk, action],
                        current_app=self.admin_site.name,
                    ),
                    label,
                )
                for action, label in self.get_object_ops_buttons(request, obj)
            ]
        return super().change_view(request, object_id, form_url, extra_context)

    def object_ops_view(self, request, object_id, action):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_ops_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404
        if action not in dict(self.get_object_ops_buttons(request, obj)):
            raise Http404
        getattr(self, action)(request, self.model._default_manager.filter(pk=obj.pk))
        return HttpResponseRedirect(change_url(obj))


def connection_test(conn: AutotaskConnection) -> tuple[str, int]:
    """Runs autotask_verify with the stored credentials; the text is for ops and the admin log
    (never a credential). An auth failure marks the connection "needs attention"; success
    sets a "needs attention" connection back to connected."""
    if conn.username is None or conn.secret is None:
        return "disconnected: no stored credentials to test.", messages.WARNING
    try:
        verified = autotask_verify(
            username=conn.username.reveal(), secret=conn.secret.reveal(), with_picklists=False
        )
    except SecretUnavailable:
        conn.record_error(
            "credentials",
            "Stored Autotask credentials cannot be decrypted; reconnect.",
            needs_attention=True,
        )
        return (
            "stored credentials cannot be decrypted (FIELD_ENCRYPTION_KEYS): marked "
            "needs attention; the partner must reconnect.",
            messages.ERROR,
        )
    except ConnectError as exc:
        attention = exc.code in AUTH_FAILURES
        conn.record_error(exc.code, exc.message, needs_attention=attention)
        suffix = " Marked needs attention." if attention else ""
        return f"failed ({exc.code}): {exc.message}{suffix}", messages.ERROR
    if conn.database_ci is not None and verified.ci not in (None, conn.database_ci):
        return "failed: the credentials now reach a different Autotask database.", messages.ERROR
    # The API user works again (e.g. its permissions were fixed in Autotask): schedules
    # may pick the partner up again. Conditional, so a disconnect meanwhile stays.
    restored = AutotaskConnection.objects.filter(
        pk=conn.pk, status=AutotaskConnection.Status.NEEDS_ATTENTION
    ).update(
        status=AutotaskConnection.Status.CONNECTED,
        last_error_kind="",
        last_error_message="",
        last_error_at=None,
        attention_since=None,
        # As when the partner fixes it (AutotaskConnection.mark_restored): manual runs that
        # failed before now give their cooldown back.
        restored_at=timezone.now(),
        updated_at=timezone.now(),
    )
    threshold = f", hourly threshold {verified.threshold:,}" if verified.threshold else ""
    text = f"OK (zone {verified.zone_name or verified.zone_url}{threshold})."
    if restored:
        text += " Status set back to connected."
    return text, messages.SUCCESS


def schedules_set_paused(model_admin, request, targets, *, paused: bool) -> None:
    """Pause or resume the schedules of each (connection, object to log on) pair."""
    word = "paused" if paused else "resumed"
    changed = 0
    for conn, logged in targets:
        # Conditional UPDATE: only rows that change are logged.
        if (
            AutotaskConnection.objects.filter(pk=conn.pk)
            .exclude(schedules_paused=paused)
            .update(schedules_paused=paused, updated_at=timezone.now())
        ):
            changed += 1
            model_admin.log_change(request, logged, f"Schedules {word}.")
    model_admin.message_user(request, f"Schedules {word} for {changed} connection(s).")


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
