"""Dashboard: Integrations → Connect Autotask (R1, R2), status, edit, disconnect."""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views.generic import FormView, View

from config.api import DomainError
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerPageView
from sync.models import SyncRun, SyncState
from sync.selectors import ACTIONS
from sync.services.manual import manual_sync_start
from sync.wording import plain_error

from . import connect
from .filters import describe_filters
from .forms import AutotaskConnectForm
from .models import IntegrationEvent
from .selectors import connection_for

# Which box a refusal from Autotask is about (integrations/services.py MESSAGES).
ERROR_FIELDS = {
    "unknown_user": "username",
    "bad_secret": "secret",
    "different_database": "username",
}


def _connection(partner):
    return connection_for(partner=partner)


class IntegrationsView(PartnerPageView):
    template_name = "integrations/list.html"
    nav = "integrations"
    title = "Integrations"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        conn = _connection(self.partner)
        state = SyncState.objects.filter(partner=self.partner).first()
        last_runs = {}
        for kind, label in SyncRun.Kind.choices:
            run = SyncRun.objects.for_partner(self.partner).filter(kind=kind).first()
            if run:
                last_runs[label] = run
        failed = _last_failed_run(self.partner)
        ctx.update(
            connection=conn,
            filters_described=describe_filters(conn.filters) if conn else [],
            failed_run=failed,
            failed_text=plain_error(failed) if failed else "",
            last_runs=last_runs,
            state=state,
            events=IntegrationEvent.objects.filter(partner=self.partner)[:5],
        )
        return ctx


def _last_failed_run(partner):
    """The partner's latest finished data run, when it failed (what "Retry now" retries)."""
    run = (
        SyncRun.objects.for_partner(partner)
        .exclude(status__in=SyncRun.ACTIVE)
        .exclude(kind=SyncRun.Kind.PDF)
        .order_by("-created_at", "-id")
        .first()
    )
    return run if run is not None and run.status == SyncRun.Status.FAILED else None


class AutotaskTestView(PartnerRequiredMixin, View):
    """Test connection (partners): the stored credentials against Autotask; a pass fixes a
    connection with a problem and queues the catch-up sync."""

    manager_only = True

    def post(self, request):
        conn = _connection(self.partner)
        if conn is None or not conn.is_active:
            messages.error(request, "Autotask is not connected.")
            return redirect("dashboard:integrations")
        try:
            conn = connect.autotask_test(connection=conn, actor=request.user)
        except DomainError as exc:
            messages.error(request, f"Test failed: {exc.message}")
            return redirect("dashboard:integrations")
        if conn.catch_up_run:
            messages.success(
                request,
                "The connection works again. A catch-up sync has started to bring in what was "
                "missed.",
            )
            return redirect("sync:run-detail", pk=conn.catch_up_run.pk)
        messages.success(request, "The connection works: Autotask accepted the API user.")
        return redirect("dashboard:integrations")


class AutotaskRetryView(PartnerRequiredMixin, View):
    """Retry now: the failed sync again, as a manual sync. Its cooldown does not hold it back
    after a failure on our side or once the connection was fixed (sync/selectors.py); one run
    per click storm all the same (the claim in sync/services/manual.py)."""

    def post(self, request):
        failed = _last_failed_run(self.partner)
        kind = (
            failed.kind if failed is not None and failed.kind in ACTIONS else SyncRun.Kind.NEW_DATA
        )
        try:
            run = manual_sync_start(partner=self.partner, kind=kind, user=request.user)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("dashboard:integrations")
        messages.success(request, "The sync has started again.")
        return redirect("sync:run-detail", pk=run.pk)


class _ConnectFormView(PartnerRequiredMixin, FormView):
    template_name = "integrations/connect.html"
    form_class = AutotaskConnectForm
    manager_only = True
    editing = False

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["editing"] = self.editing
        return kwargs

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.update(
            nav="integrations",
            title="Connect Autotask",
            editing=self.editing,
            connection=_connection(self.partner),
        )
        return ctx


class AutotaskConnectView(_ConnectFormView):
    def get(self, request, *args, **kwargs):
        conn = _connection(self.partner)
        if conn and conn.is_active:
            return redirect("integrations:autotask-edit")
        return super().get(request, *args, **kwargs)

    def form_valid(self, form):
        data = form.cleaned_data
        try:
            conn = connect.autotask_connect(
                partner=self.partner,
                actor=self.request.user,
                account_email=data["account_email"],
                username=data["username"],
                secret=data["secret"],
                identifier=data["identifier"],
                filters=data["filters"],
            )
        except DomainError as exc:
            self._add_domain_error(form, exc)
            return self.form_invalid(form)
        messages.success(self.request, "Autotask is connected. The first sync has started.")
        if conn.first_run:
            return redirect("sync:run-detail", pk=conn.first_run.pk)
        return redirect("dashboard:integrations")

    @staticmethod
    def _add_domain_error(form, exc):
        """Each error at its field: filters at theirs, a refused username or secret at that
        box; the rest (Autotask settings, conflicts) above the form."""
        field_errors = (exc.extra.get("errors") or {}).get("filters") or {}
        for key, msgs in field_errors.items():
            form.add_error(key if key in form.fields else None, msgs)
        if not field_errors:
            field = ERROR_FIELDS.get(getattr(exc, "code", ""))
            form.add_error(field if field in form.fields else None, exc.message)


class AutotaskEditView(_ConnectFormView):
    editing = True

    def get_initial(self):
        conn = _connection(self.partner)
        return AutotaskConnectForm.initial_from(conn) if conn else {}

    def get(self, request, *args, **kwargs):
        conn = _connection(self.partner)
        if not conn or not conn.is_active:
            return redirect("integrations:autotask-connect")
        return super().get(request, *args, **kwargs)

    def form_valid(self, form):
        data = form.cleaned_data
        conn = _connection(self.partner)
        if conn is None or not conn.is_active:
            return redirect("integrations:autotask-connect")
        try:
            conn = connect.autotask_update(
                connection=conn,
                actor=self.request.user,
                account_email=data["account_email"],
                username=data.get("username") or None,
                secret=data.get("secret") or None,
                identifier=data["identifier"],
                filters=data["filters"],
            )
        except DomainError as exc:
            AutotaskConnectView._add_domain_error(form, exc)
            return self.form_invalid(form)
        if conn.catch_up_run:
            messages.success(
                self.request,
                "The connection works again. A catch-up sync has started to bring in what was "
                "missed.",
            )
            return redirect("sync:run-detail", pk=conn.catch_up_run.pk)
        messages.success(self.request, "The Autotask connection was updated.")
        return redirect("dashboard:integrations")


class AutotaskDisconnectView(PartnerRequiredMixin, View):
    manager_only = True

    def post(self, request):
        conn = _connection(self.partner)
        if conn is None or not conn.is_active:
            messages.error(request, "Autotask is not connected.")
        else:
            connect.autotask_disconnect(connection=conn, actor=request.user)
            messages.success(
                request,
                "Autotask was disconnected: credentials erased, schedules stopped. Your synced "
                "data is kept.",
            )
        return redirect(reverse("dashboard:integrations"))
