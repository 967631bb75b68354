"""Dashboard pages of the partner's customers: the list (sortable, totals, CSV export), the
customer's page, archiving and customers created here (R7, R9, issue 17 item 8)."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views import View

from config.listing import csv_response, parse_sort, query_without, sort_headers
from invoices.selectors import (
    CUSTOMER_DEFAULT_SORT,
    CUSTOMER_SORTS,
    LIST_CAP,
    customer_balance,
    customer_list,
    customer_page_rows,
    customers_outstanding,
    invoice_list,
)
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerFormView, PartnerPageView
from payments.models import Payment

from . import services
from .forms import CustomerCreateForm
from .models import Customer

CUSTOMER_COLUMNS = [
    ("Name", "name"),
    ("Number", "number"),
    ("City", "city"),
    ("Phone", None),
    ("Currency", "currency"),
    ("Outstanding", "outstanding"),
    ("Source", None),
    ("Active", None),
    ("", None),
]
CSV_CHUNK = 2000
PAGE_INVOICES = 100  # the customer page's invoices; the rest through the filtered invoice list
PAGE_PAYMENTS = 10


def _customer_filters(view):
    g = view.request.GET
    sort = parse_sort(g.get("sort"), CUSTOMER_SORTS, CUSTOMER_DEFAULT_SORT)
    qs = customer_list(
        partner=view.partner,
        search=g.get("q", "")[:100],
        archived=g.get("archived", "no"),
        sort=sort.key,
    )
    return qs, sort


class CustomerListView(PartnerPageView):
    template_name = "customers/list.html"
    nav = "customers"
    title = "Customers"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        qs, sort = _customer_filters(self)
        totals, complete = customers_outstanding(partner=self.partner, customers=qs)
        ctx.update(
            page=Paginator(
                customer_page_rows(qs, partner=self.partner, order_by=sort.order_by), 50
            ).get_page(g.get("page")),
            totals=totals if complete else [],
            totals_capped=not complete,
            list_cap=f"{LIST_CAP:,}",
            headers=sort_headers(g, sort, CUSTOMER_COLUMNS),
            sort=sort.key,
            query=query_without(g, "page"),
            q=g.get("q", ""),
            archived=g.get("archived", "no"),
        )
        return ctx


class CustomerExportView(PartnerRequiredMixin, View):
    """`/invoices/customers/export.csv`: the filtered list, in the list's order, streamed."""

    def get(self, request):
        qs, _sort = _customer_filters(self)
        rows = qs.values_list(
            "name",
            "number",
            "email",
            "phone",
            "address1",
            "address2",
            "city",
            "state",
            "postal_code",
            "currency",
            "outstanding_total",
            "source",
            "active",
            "archived_at",
        ).iterator(chunk_size=CSV_CHUNK)

        def lines():
            for *fields, owed, source, active, archived_at in rows:
                yield (
                    *fields,
                    f"{owed:.2f}",  # SQLite's sum loses the scale ("15" for 15.00)
                    source,
                    "yes" if active else "no",
                    "yes" if archived_at else "no",
                )

        header = [
            "Name",
            "Number",
            "Email",
            "Phone",
            "Address 1",
            "Address 2",
            "City",
            "State",
            "Postal code",
            "Currency",
            "Outstanding",
            "Source",
            "Active",
            "Archived",
        ]
        today = timezone.localdate()
        return csv_response(f"customers-{today:%Y-%m-%d}.csv", header, lines())


class CustomerDetailView(PartnerPageView):
    """A customer's page: contact, balance per currency, invoices and recent payments."""

    template_name = "customers/detail.html"
    nav = "customers"
    title = "Customer"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        customer = get_object_or_404(self.get_partner_queryset(Customer), pk=self.kwargs["pk"])
        invoices = invoice_list(partner=self.partner, customer_id=customer.pk, archived="all")
        ctx.update(
            customer=customer,
            title=customer.name,
            balance=customer_balance(partner=self.partner, customer=customer),
            invoices=invoices[:PAGE_INVOICES],
            invoice_count=invoices.count(),
            payments=self.get_partner_queryset(Payment)
            .filter(invoice__customer=customer)
            .select_related("invoice")
            .order_by("-received_at", "-id")[:PAGE_PAYMENTS],
        )
        return ctx


class CustomerArchiveView(PartnerRequiredMixin, View):
    """POST: archive (or, with `unarchive=1`, unarchive) a customer, at once (R9)."""

    def post(self, request, pk):
        customer = get_object_or_404(self.get_partner_queryset(Customer), pk=pk)
        archived = request.POST.get("unarchive") != "1"
        services.customer_archive(partner=self.partner, customer_id=customer.pk, archived=archived)
        messages.success(request, "Customer archived." if archived else "Customer unarchived.")
        return HttpResponseRedirect(reverse("dashboard:customers"))


# Same permission as archiving: any user of the partner. Nothing here talks to Autotask: the
# service marks the row source "local" with no Autotask id, which the sync skips.


class CustomerCreateView(PartnerFormView):
    template_name = "customers/new.html"
    form_class = CustomerCreateForm
    nav = "customers"
    title = "New customer"

    def form_valid(self, form):
        customer = services.customer_create_local(partner=self.partner, **form.cleaned_data)
        messages.success(
            self.request,
            f"Customer {customer.name} created here. It is never sent to Autotask.",
        )
        # Filtered on the new name, so the new row is on the page however long the list is.
        query = urlencode({"q": customer.name})
        return HttpResponseRedirect(f"{reverse('dashboard:customers')}?{query}")
