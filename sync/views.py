from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404

from partners.views import PartnerPageView

from . import selectors
from .models import ChangeLogEntry, SyncRun


class SyncHistoryView(PartnerPageView):
    template_name = "sync/history.html"
    nav = "sync-history"
    title = "Sync history"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        runs = self.get_partner_queryset(SyncRun)
        kind = self.request.GET.get("kind")
        if kind in SyncRun.Kind.values:
            runs = runs.filter(kind=kind)
        ctx["page"] = Paginator(runs, 25).get_page(self.request.GET.get("page"))
        ctx["kinds"] = SyncRun.Kind.choices
        ctx["kind"] = kind
        return ctx


class SyncRunDetailView(PartnerPageView):
    template_name = "sync/run_detail.html"
    nav = "sync-history"
    title = "Sync run"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        run = get_object_or_404(self.get_partner_queryset(SyncRun), pk=self.kwargs["pk"])
        changes = ChangeLogEntry.objects.for_partner(self.partner).filter(run=run).order_by("id")
        ctx.update(run=run, changes=Paginator(changes, 100).get_page(self.request.GET.get("page")))
        return ctx


class PreferencesView(PartnerPageView):
    """Preferences → manual syncs (R10) and the partner's last 20 runs. The page shows the
    state on load; its script starts runs through the API and polls the status API."""

    template_name = "sync/preferences.html"
    nav = "preferences"
    title = "Preferences"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        status = selectors.manual_sync_status(partner=self.partner)
        ctx.update(
            manual=status,
            actions=list((status["actions"] or {}).values()),
            zone=selectors.partner_zone(self.partner),
            runs=self.get_partner_queryset(SyncRun).order_by("-created_at", "-id")[:20],
        )
        return ctx
