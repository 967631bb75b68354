"""Dashboard: Integrations → Connect Autotask (R1, R2), status, edit, disconnect."""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views.generic import FormView, View

from config.api import DomainError
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerPageView
from sync.models import SyncRun, SyncState

from . import connect
from .filters import describe_filters
from .forms import AutotaskConnectForm
from .models import IntegrationEvent
from .selectors import connection_for


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
        ctx.update(
            connection=conn,
            filters_described=describe_filters(conn.filters) if conn else [],
            last_runs=last_runs,
            state=state,
            events=IntegrationEvent.objects.filter(partner=self.partner)[:5],
        )
        return ctx


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
        field_errors = (exc.extra.get("errors") or {}).get("filters") or {}
        for key, msgs in field_errors.items():
            form.add_error(key if key in form.fields else None, msgs)
        if not field_errors:
            form.add_error(None, exc.message)


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
            connect.autotask_update(
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
