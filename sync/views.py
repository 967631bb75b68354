import zoneinfo

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404
from django.urls import reverse

from customers.models import Customer
from invoices.models import Invoice
from notifications.forms import NotificationPreferencesForm
from notifications.services import opted_out_kinds
from partners.views import PartnerPageView

from . import selectors, wording
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
        page = Paginator(changes, 100).get_page(self.request.GET.get("page"))
        ctx.update(
            run=run,
            changes=page,
            rows=_change_rows(self.partner, list(page)),
            new_records=_new_records(self.partner, run),
            skipped=sorted((run.skipped_reasons or {}).items(), key=lambda kv: -kv[1]),
            zone=selectors.partner_zone(self.partner),
            plain_error=wording.plain_error(run),
        )
        return ctx


NEW_RECORDS_SHOWN = 200


def _records(partner, record_type: str, ids) -> dict:
    model = Invoice if record_type == "invoice" else Customer
    fields = ("id", "number") if model is Invoice else ("id", "name")
    return {
        r["id"]: r
        for r in model.objects.for_partner(partner).filter(pk__in=set(ids)).values(*fields)
    }


def _record_link(record_type: str, row: dict | None, record_id: int) -> tuple[str, str | None]:
    """(what the partner calls the record, a link to its page or None)."""
    if record_type == "invoice":
        if row is None:
            return f"Invoice (removed, id {record_id})", None
        return f"Invoice {row['number']}", reverse("invoices:detail", args=[record_id])
    if row is None:
        return f"Customer (removed, id {record_id})", None
    return f"Customer {row['name']}", reverse("dashboard:customers") + f"?q={row['name']}"


def _change_rows(partner, changes: list[ChangeLogEntry]) -> list[dict]:
    by_type: dict[str, list[int]] = {}
    for c in changes:
        by_type.setdefault(c.record_type, []).append(c.record_id)
    found = {t: _records(partner, t, ids) for t, ids in by_type.items()}
    rows = []
    for c in changes:
        name, link = _record_link(c.record_type, found[c.record_type].get(c.record_id), c.record_id)
        rows.append(
            {
                "record": name,
                "link": link,
                "field": wording.field_label(c.field),
                "old": wording.field_value(c.field, c.old_value),
                "new": wording.field_value(c.field, c.new_value),
            }
        )
    return rows


def _new_records(partner, run: SyncRun) -> list[dict]:
    """Records this run created: one sync of a partner at a time (the partner lease), so the
    rows from Autotask created between its start and end are its own."""
    if run.started_at is None:
        return []
    window = {"created_at__gte": run.started_at, "source": "autotask"}
    if run.finished_at is not None:
        window["created_at__lte"] = run.finished_at
    out = []
    for model, record_type in ((Customer, "customer"), (Invoice, "invoice")):
        rows = (
            model.objects.for_partner(partner)
            .filter(**window)
            .order_by("id")
            .values(*(("id", "number") if model is Invoice else ("id", "name")))[:NEW_RECORDS_SHOWN]
        )
        for row in rows:
            name, link = _record_link(record_type, row, row["id"])
            out.append({"record": name, "link": link})
    return out


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
            time_zones=sorted(zoneinfo.available_timezones()),
            can_manage=self.request.user.can_manage_partner,
        )
        ctx.update(self._notifications())
        return ctx

    def _notifications(self) -> dict:
        # Preferences → Notifications: the signed-in owner's own boxes (emails go to owners).
        user = self.request.user
        if user.role != user.Role.OWNER:
            return {"notify_form": None}
        off = opted_out_kinds(partner=self.partner, user=user)
        form = NotificationPreferencesForm(
            initial={kind: kind not in off for kind in NotificationPreferencesForm.base_fields}
        )
        return {"notify_form": form}
