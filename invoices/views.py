from django.contrib import messages
from django.db.models import Max
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.views import View

from config.api import DomainError
from config.listing import (
    CappedPaginator,
    csv_response,
    parse_date_range,
    parse_sort,
    query_without,
    sort_headers,
)
from customers.models import Customer, Source
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerFormView, PartnerPageView
from payments.selectors import voided_after_payment
from payments.timeline import invoice_timeline
from sync.models import ChangeLogEntry, SyncRun
from sync.tuning import RECENTLY_PAID

from . import services
from .forms import InvoiceCreateForm
from .models import Invoice, InvoiceStatus
from .pdf import PdfUnavailable, invoice_pdf
from .selectors import (
    INVOICE_DATE_FIELDS,
    INVOICE_DEFAULT_SORT,
    INVOICE_SORTS,
    LIST_CAP,
    OPEN_STATES,
    capped_totals,
    invoice_list,
    sort_the_range,
    with_duplicate_flag,
)

# Columns of the list: (label, sort name); the same filters drive the page and its CSV export.
INVOICE_COLUMNS = [
    ("Number", "number"),
    ("Customer", "customer"),
    ("Date", "invoice_date"),
    ("Due", "due_date"),
    ("Total", "total"),
    ("Outstanding", "outstanding"),
    ("Status", "status"),
    ("", None),
]
CSV_CHUNK = 2000


def _invoice_filters(view):
    """The list's filters from the query string: (queryset, context values, date range)."""
    g = view.request.GET
    customer = g.get("customer", "")
    dates = parse_date_range(g)
    date_field = g.get("dates", "invoice") if g.get("dates") in INVOICE_DATE_FIELDS else "invoice"
    qs = invoice_list(
        partner=view.partner,
        search=g.get("q", "")[:100],
        status=g.get("status", ""),
        customer_id=int(customer) if customer.isdigit() else None,
        archived=g.get("archived", "no"),
        missing=g.get("missing") == "1",
        sort=g.get("sort", ""),
        date_field=date_field,
        date_from=dates.start,
        date_to=dates.end,
    )
    values = {
        "q": g.get("q", ""),
        "status": g.get("status", ""),
        "customer": customer,
        "archived": g.get("archived", "no"),
        "dates": date_field,
    }
    return qs, values, dates


def _customer_options(view, selected: str):
    """The customer filter's <option>s (500 at most), joined in Python: as template tags they
    were a third of a 50-row page's rendering time (issue 19, bench/list_scale.py)."""
    rows = (
        view.get_partner_queryset(Customer)
        .filter(archived_at__isnull=True)
        .values_list("id", "name")[:500]
    )
    return format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((pk, " selected" if str(pk) == selected else "", name) for pk, name in rows),
    )


class InvoiceListView(PartnerPageView):
    template_name = "invoices/list.html"
    nav = "invoices"
    title = "Invoices"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        qs, values, dates = _invoice_filters(self)
        sort = parse_sort(g.get("sort"), INVOICE_SORTS, INVOICE_DEFAULT_SORT)
        # Count and totals in one statement over at most LIST_CAP + 1 rows (selectors.py).
        totals, complete = capped_totals(qs)
        count = sum(t["n"] for t in totals) if complete else LIST_CAP
        ranged = INVOICE_DATE_FIELDS[values["dates"]]
        if complete and dates.active and sort.order_by[0].lstrip("-") != ranged:
            qs = sort_the_range(qs, sort.order_by)  # a date range read through its own index
        page = CappedPaginator(
            with_duplicate_flag(qs, self.partner), 50, count=count, capped=not complete
        ).get_page(g.get("page"))
        page.object_list = list(page.object_list)
        ctx.update(
            values,
            page=page,
            totals=totals if complete else [],
            list_cap=f"{LIST_CAP:,}",
            headers=sort_headers(g, sort, INVOICE_COLUMNS),
            sort=sort.key,
            dates_range=dates,
            query=query_without(g, "page"),
            statuses=InvoiceStatus.choices,
            customer_options=_customer_options(self, values["customer"]),
            # The rows' links as prefix + id: 150 reverse() calls were a sixth of the page's
            # rendering. Checked against reverse() in tests/invoices/test_list_scale.py.
            invoices_url=reverse("invoices:list"),
            customers_url=reverse("customers:detail", args=[0])[: -len("0/")],
        )
        return ctx


class InvoiceExportView(PartnerRequiredMixin, View):
    """`/invoices/export.csv`: the filtered list (every page, in the list's order), streamed."""

    def get(self, request):
        qs, _values, dates = _invoice_filters(self)
        if dates.error:
            return HttpResponse(dates.error, status=400, content_type="text/plain")
        today = timezone.localdate()
        rows = qs.values_list(
            "number",
            "customer__name",
            "customer__number",
            "invoice_date",
            "due_date",
            "currency",
            "total",
            "tax",
            "outstanding",
            "status",
            "source",
            "archived_at",
        ).iterator(chunk_size=CSV_CHUNK)

        def lines():
            for number, name, cnum, issued, due, cur, total, tax, owed, status, src, arch in rows:
                overdue = status in OPEN_STATES and due is not None and due < today
                label = "Overdue" if overdue else InvoiceStatus(status).label
                yield (
                    number,
                    name,
                    cnum,
                    issued,
                    due,
                    cur,
                    total,
                    tax,
                    owed,
                    label,
                    src,
                    "yes" if arch else "no",
                )

        header = [
            "Number",
            "Customer",
            "Customer number",
            "Invoice date",
            "Due date",
            "Currency",
            "Total",
            "Tax",
            "Outstanding",
            "Status",
            "Source",
            "Archived",
        ]
        return csv_response(f"invoices-{today:%Y-%m-%d}.csv", header, lines())


class InvoiceDetailView(PartnerPageView):
    template_name = "invoices/detail.html"
    nav = "invoices"
    title = "Invoice"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["invoice"] = invoice = get_object_or_404(
            self.get_partner_queryset(Invoice).select_related("customer"), pk=self.kwargs["pk"]
        )
        # Voided in Autotask after payment here: the proposed replacement and the move form.
        ctx["voided_drift"] = voided_after_payment(partner=self.partner, invoice=invoice)
        # Newest first on the page (the API gives it oldest first).
        ctx["timeline"] = invoice_timeline(partner=self.partner, invoice=invoice)[::-1]
        ctx["last_read"] = _last_read_from_autotask(self.partner, invoice)
        ctx["can_record_payment"] = (
            invoice.status in OPEN_STATES and not invoice.archived_at and not invoice.voided
        )
        return ctx


def _last_read_from_autotask(partner, invoice):
    """When a sync last read this invoice from Autotask (the invoice page's sync line): the
    sync that brought it or last changed it, or the latest Fetch Unpaid Invoices run that
    re-read it (every open invoice, and paid ones for RECENTLY_PAID: sync/rereads.py). None for
    invoices created here."""
    if invoice.source != Source.AUTOTASK:
        return None
    moments = [invoice.created_at]
    changed = (
        ChangeLogEntry.objects.for_partner(partner)
        .filter(record_type="invoice", record_id=invoice.pk)
        .aggregate(at=Max("created_at"))["at"]
    )
    moments.append(changed)
    run = (
        SyncRun.objects.for_partner(partner)
        .filter(
            kind=SyncRun.Kind.UNPAID,
            status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL],
            finished_at__isnull=False,
            started_at__gte=invoice.created_at,
        )
        .order_by("-finished_at")
        .only("started_at", "finished_at")
        .first()
    )
    if run is not None and not invoice.voided:
        since = run.started_at - RECENTLY_PAID
        reread = invoice.status in OPEN_STATES or (
            invoice.paid_in_autotask_on >= since.date()
            if invoice.paid_in_autotask_on
            else invoice.updated_at >= since
        )
        if reread:
            moments.append(run.finished_at)
    return max(m for m in moments if m is not None)


class InvoicePdfView(PartnerRequiredMixin, View):
    def get(self, request, pk):
        invoice = get_object_or_404(self.get_partner_queryset(Invoice), pk=pk)
        try:
            pdf = invoice_pdf(invoice)
        except PdfUnavailable as exc:
            return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
        response = HttpResponse(pdf.content, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{pdf.filename}"'
        if pdf.stale:
            response["X-PDF-Stale"] = "1"
        return response


class InvoiceArchiveView(PartnerRequiredMixin, View):
    """POST: archive (or, with `unarchive=1`, unarchive) an invoice, at once (R9)."""

    def post(self, request, pk):
        invoice = get_object_or_404(self.get_partner_queryset(Invoice), pk=pk)
        archived = request.POST.get("unarchive") != "1"
        services.invoice_archive(partner=self.partner, invoice_id=invoice.pk, archived=archived)
        messages.success(request, "Invoice archived." if archived else "Invoice unarchived.")
        return HttpResponseRedirect(reverse("invoices:detail", args=[invoice.pk]))


# --- invoices created here (R7) ---------------------------------------------------------------
#
# Same permission as archiving (the view above): any user of the partner. Nothing here talks to
# Autotask: the service marks the rows source "local" with no Autotask id, which the sync and
# the paidDate write-back skip. (New customer: customers/views.py.)


class InvoiceCreateView(PartnerFormView):
    """`/invoices/new/` (customer chosen in the form) and `/invoices/customers/<pk>/new-invoice/`
    (from a customer's row: that customer preselected; another partner's or an archived
    customer answers 404)."""

    template_name = "invoices/new.html"
    form_class = InvoiceCreateForm
    nav = "invoices"
    title = "New invoice"

    customer = None  # the preselected customer, on the per-customer route

    def _preselected_customer(self):
        if "customer_pk" not in self.kwargs:
            return None
        return get_object_or_404(
            self.get_partner_queryset(Customer).filter(archived_at__isnull=True),
            pk=self.kwargs["customer_pk"],
        )

    def get(self, request, *args, **kwargs):
        self.customer = self._preselected_customer()
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        self.customer = self._preselected_customer()
        return super().post(request, *args, **kwargs)

    def get_initial(self):
        initial = super().get_initial()
        if self.customer is not None:
            initial["customer"] = self.customer.pk
        return initial

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "partner": self.partner}

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["customer"] = self.customer
        return ctx

    def form_valid(self, form):
        data = form.cleaned_data
        try:
            invoice = services.invoice_create_local(
                partner=self.partner,
                customer_id=data["customer"].pk,
                number=data["number"],
                invoice_date=data["invoice_date"],
                due_date=data["due_date"],
                total=data["total"],
                tax=data["tax"],
                currency=data["currency"],
            )
        except DomainError as exc:
            # The customer was archived (or is gone) between the form's check and the write.
            form.add_error("customer" if exc.code.startswith("customer") else None, exc.message)
            return self.form_invalid(form)
        messages.success(
            self.request,
            f"Invoice {invoice.number} created here. It is never sent to Autotask.",
        )
        return HttpResponseRedirect(reverse("invoices:detail", args=[invoice.pk]))
