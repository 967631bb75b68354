from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View

from config.api import DomainError
from customers.models import Customer
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerFormView, PartnerPageView
from payments.selectors import voided_after_payment
from payments.timeline import invoice_timeline

from . import services
from .forms import InvoiceCreateForm
from .models import Invoice, InvoiceStatus
from .pdf import PdfUnavailable, invoice_pdf
from .selectors import duplicate_numbers, invoice_list


class InvoiceListView(PartnerPageView):
    template_name = "invoices/list.html"
    nav = "invoices"
    title = "Invoices"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        customer = g.get("customer", "")
        qs = invoice_list(
            partner=self.partner,
            search=g.get("q", "")[:100],
            status=g.get("status", ""),
            customer_id=int(customer) if customer.isdigit() else None,
            archived=g.get("archived", "no"),
            missing=g.get("missing") == "1",
        )
        ctx.update(
            page=Paginator(qs, 50).get_page(g.get("page")),
            statuses=InvoiceStatus.choices,
            customers=self.get_partner_queryset(Customer)
            .filter(archived_at__isnull=True)
            .only("id", "name")[:500],
            duplicates=duplicate_numbers(self.partner),
            q=g.get("q", ""),
            status=g.get("status", ""),
            customer=customer,
            archived=g.get("archived", "no"),
        )
        return ctx


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
        return ctx


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
