"""The Django admin as the ops console (issue 8): the partners overview and the users here;
every app registers its own models in its admin.py with the helpers of ops/mixins.py. The
overview's query and the Autotask budget are in ops/selectors.py, its list filters in
ops/filters.py. Admin URLs follow the models' apps (/admin/partners/partner/), not this one.

Who may do what (the "support" group is created by partners/migrations/0002_support_group.py):
- Only staff reach the admin (Django's AdminSite.has_permission); partner users are sent to
  the admin login.
- "support": view permission on every model of our apps and of django-celery-beat, plus
  `partners.run_ops_actions` for the ops actions. No add/change/delete permission, so money
  fields and credentials are out of reach and support deletes nothing.
- Superusers can do everything the admin offers, but no admin page shows a credential: the
  encrypted fields are never in a form, a list or a change message, and API tokens are stored
  hashed (partners/tokens.py; DRF's authtoken app, which listed them in clear, is gone).

Every ops action writes an admin LogEntry per object; its message names what was done and its
outcome, never a credential.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from customers.models import Customer
from integrations.models import AutotaskConnection
from invoices.models import Invoice
from partners.models import Partner, User
from payments.models import WebhookEvent, WritebackOutbox
from sync.models import SyncRun

from .filters import ConnectionStatusFilter, HasOpenProblemsFilter, SchedulesPausedFilter
from .mixins import (
    NoBulkDeleteMixin,
    ObjectOpsButtonsMixin,
    changelist_url,
    connection_test,
    run_ops_syncs,
    schedules_set_paused,
)
from .selectors import ALL_KINDS, attach_budgets, partner_overview


class UserInline(admin.TabularInline):
    model = User
    fields = ["username", "email", "role", "is_active", "last_login"]
    readonly_fields = ["last_login"]
    extra = 0
    show_change_link = True


def _ago(when) -> str:
    if when is None:
        return ""
    seconds = max(0, int((timezone.now() - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


@admin.register(Partner)
class PartnerAdmin(NoBulkDeleteMixin, ObjectOpsButtonsMixin, admin.ModelAdmin):
    # Open problems right after the name: the column ops look for must be on screen at 1366 px.
    list_display = [
        "name",
        "open_problems",
        "connection",
        "users",
        "last_new_data",
        "last_unpaid",
        "autotask_requests",
    ]
    search_fields = ["name", "slug"]
    search_help_text = (
        "Partner name, or an Autotask company/invoice id, or an invoice number of the partner."
    )
    list_filter = [
        HasOpenProblemsFilter,
        ConnectionStatusFilter,
        SchedulesPausedFilter,
        "primary_integration",
    ]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [UserInline]
    actions = [
        "test_connection",
        "run_fetch_new_data_now",
        "run_fetch_unpaid_invoices_now",
        "pause_schedules",
        "resume_schedules",
    ]
    # The same actions as buttons on the partner's page (ops/mixins.py ObjectOpsButtonsMixin).
    object_ops_buttons = [
        ("test_connection", "Test connection"),
        ("run_fetch_new_data_now", "Run Fetch New Data now"),
        ("run_fetch_unpaid_invoices_now", "Run Fetch Unpaid Invoices now"),
        ("pause_schedules", "Pause schedules"),
        ("resume_schedules", "Resume schedules"),
    ]
    fieldsets = [
        (None, {"fields": ["name", "slug", "primary_integration", "time_zone"]}),
        (
            "Operations",
            {
                "fields": [
                    "connection",
                    "last_syncs",
                    "autotask_requests",
                    "open_problems",
                    "created_at",
                ]
            },
        ),
    ]
    readonly_fields = ["connection", "last_syncs", "autotask_requests", "open_problems"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "created_at"] if obj else self.readonly_fields

    def get_object_ops_buttons(self, request, obj):
        if obj.connection_id is None:  # nothing to test, sync or pause yet
            return []
        hidden = "pause_schedules" if obj.schedules_paused else "resume_schedules"
        return [b for b in self.object_ops_buttons if b[0] != hidden]

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # adding: nothing to show yet
            return [(None, {"fields": ["name", "slug", "primary_integration", "time_zone"]})]
        return self.fieldsets

    def get_queryset(self, request):
        return partner_overview(super().get_queryset(request))

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # Evaluates the page's queryset once; the template iterates the same cached objects.
        attach_budgets(changelist.result_list)
        return changelist

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            attach_budgets([obj])
        return obj

    def get_search_results(self, request, queryset, search_term):
        """Name/slug as usual, plus partners owning a customer or invoice with that Autotask id
        or an invoice with that number."""
        matched, may_have_duplicates = super().get_search_results(
            request, Partner.objects.all(), search_term
        )
        term = search_term.strip()
        if not term:
            return queryset, may_have_duplicates
        owners = Q(pk__in=matched.values("pk"))
        owners |= Q(
            pk__in=Invoice.objects.filter(Q(number=term) | Q(autotask_invoice_number=term)).values(
                "partner_id"
            )
        )
        if term.isdigit() and len(term) < 19:  # fits a bigint
            at_id = int(term)
            owners |= Q(pk__in=Invoice.objects.filter(autotask_id=at_id).values("partner_id"))
            owners |= Q(pk__in=Customer.objects.filter(autotask_id=at_id).values("partner_id"))
        return queryset.filter(owners), False

    # --- columns ---

    @admin.display(description="Users", ordering="user_count")
    def users(self, obj):
        url = changelist_url(User, partner__id__exact=obj.pk)
        return format_html('<a href="{}">{}</a>', url, obj.user_count)

    @admin.display(description="Autotask", ordering="connection_status")
    def connection(self, obj):
        if obj.connection_id is None:
            return "not connected"
        label = AutotaskConnection.Status(obj.connection_status).label
        if obj.schedules_paused:
            label += " (schedules paused)"
        url = reverse("admin:integrations_autotaskconnection_change", args=[obj.connection_id])
        return format_html('<a href="{}">{}</a>', url, label)

    def _last(self, obj, kind):
        if hasattr(obj, f"last_{kind}_status"):
            status = getattr(obj, f"last_{kind}_status")
            run_id, when = getattr(obj, f"last_{kind}_id"), getattr(obj, f"last_{kind}_at")
        else:  # one partner's change page: a direct query
            last = SyncRun.objects.filter(partner=obj, kind=kind).order_by("-created_at", "-id")
            found = last.values_list("status", "id", "created_at").first()
            status, run_id, when = found or (None, None, None)
        if status is None:
            return "never"
        url = reverse("admin:sync_syncrun_change", args=[run_id])
        return format_html(
            '<a href="{}">{}</a> {}', url, SyncRun.Status(status).label.lower(), _ago(when)
        )

    @admin.display(description="Last new data", ordering="last_new_data_at")
    def last_new_data(self, obj):
        return self._last(obj, SyncRun.Kind.NEW_DATA)

    @admin.display(description="Last unpaid", ordering="last_unpaid_at")
    def last_unpaid(self, obj):
        return self._last(obj, SyncRun.Kind.UNPAID)

    @admin.display(description="Last syncs")
    def last_syncs(self, obj):
        rows = [(SyncRun.Kind(kind).label, self._last(obj, kind)) for kind in ALL_KINDS]
        return format_html_join("", "<div>{}: {}</div>", rows)

    @admin.display(description="Autotask requests this hour / budget")
    def autotask_requests(self, obj):
        usage = getattr(obj, "budget_usage", None)
        if obj.database_ci is None:
            return "—"
        if usage == "unavailable":
            return "unavailable"
        used, limit = usage or (0, None)
        if limit is None:
            return f"{used:,} / unknown (read at the next request)"
        share = f" ({used * 100 // limit}%)" if limit else ""
        return f"{used:,} / {limit:,}{share}"

    @admin.display(description="Open problems")
    def open_problems(self, obj):
        problems = []
        if obj.connection_status == AutotaskConnection.Status.NEEDS_ATTENTION:
            url = reverse("admin:integrations_autotaskconnection_change", args=[obj.connection_id])
            problems.append((url, "connection needs attention"))
        if obj.failed_writebacks:
            url = changelist_url(WritebackOutbox, partner__id__exact=obj.pk, needs_ops="yes")
            problems.append((url, f"{obj.failed_writebacks} failed write-back(s)"))
        if obj.failed_runs_day:
            url = changelist_url(
                SyncRun, partner__id__exact=obj.pk, status__exact="failed", since="day"
            )
            problems.append((url, f"{obj.failed_runs_day} failed run(s) in the last day"))
        if obj.parked_events:
            url = changelist_url(WebhookEvent, partner__id__exact=obj.pk, status__exact="parked")
            problems.append((url, f"{obj.parked_events} parked payment event(s)"))
        if not problems:
            return "—"
        return format_html_join("", '<div><a href="{}">{}</a></div>', problems)

    # --- actions ---

    @admin.action(description="Run Fetch New Data now", permissions=["ops"])
    def run_fetch_new_data_now(self, request, queryset):
        run_ops_syncs(self, request, [(p, p) for p in queryset], SyncRun.Kind.NEW_DATA)

    @admin.action(description="Run Fetch Unpaid Invoices now", permissions=["ops"])
    def run_fetch_unpaid_invoices_now(self, request, queryset):
        run_ops_syncs(self, request, [(p, p) for p in queryset], SyncRun.Kind.UNPAID)

    def _connections(self, request, queryset):
        """(connection, partner) pairs; partners never connected are named in a warning."""
        partners = {p.pk: p for p in queryset}
        found = AutotaskConnection.objects.filter(partner_id__in=partners).order_by("partner_id")
        pairs = [(c, partners[c.partner_id]) for c in found]
        connected = {c.partner_id for c, _ in pairs}
        missing = sorted(str(p) for pk, p in partners.items() if pk not in connected)
        if missing:
            self.message_user(
                request, f"Not connected to Autotask: {', '.join(missing)}.", messages.WARNING
            )
        return pairs

    @admin.action(description="Test connection (with the stored credentials)", permissions=["ops"])
    def test_connection(self, request, queryset):
        for conn, partner in self._connections(request, queryset):
            outcome, level = connection_test(conn)
            self.log_change(request, partner, f"Tested connection: {outcome}")
            self.message_user(request, f"{partner}: {outcome}", level)

    @admin.action(description="Pause schedules", permissions=["ops"])
    def pause_schedules(self, request, queryset):
        pairs = self._connections(request, queryset)
        schedules_set_paused(self, request, pairs, paused=True)

    @admin.action(description="Resume schedules", permissions=["ops"])
    def resume_schedules(self, request, queryset):
        pairs = self._connections(request, queryset)
        schedules_set_paused(self, request, pairs, paused=False)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "partner", "role", "is_staff", "is_active"]
    list_filter = ["is_staff", "is_active", "role", "groups"]
    list_select_related = ["partner"]
    search_fields = [*BaseUserAdmin.search_fields, "partner__name"]
    fieldsets = [
        *BaseUserAdmin.fieldsets,
        ("Partner", {"fields": ["partner", "role"]}),
    ]
    add_fieldsets = [
        *BaseUserAdmin.add_fieldsets,
        ("Partner", {"fields": ["partner", "role", "email"]}),
    ]
