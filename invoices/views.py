from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View

from customers.models import Customer
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerPageView

from . import services
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
        ctx["invoice"] = get_object_or_404(
            self.get_partner_queryset(Invoice).select_related("customer"), pk=self.kwargs["pk"]
        )
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


class CustomerListView(PartnerPageView):
    template_name = "customers/list.html"
    nav = "customers"
    title = "Customers"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        qs = self.get_partner_queryset(Customer)
        if g.get("archived") == "only":
            qs = qs.filter(archived_at__isnull=False)
        elif g.get("archived") != "all":
            qs = qs.filter(archived_at__isnull=True)
        if g.get("q"):
            qs = qs.filter(name__icontains=g["q"][:100])
        ctx.update(page=Paginator(qs, 50).get_page(g.get("page")), q=g.get("q", ""))
        return ctx


class InvoiceArchiveView(PartnerRequiredMixin, View):
    """POST: archive (or, with `unarchive=1`, unarchive) an invoice, at once (R9)."""

    def post(self, request, pk):
        invoice = get_object_or_404(self.get_partner_queryset(Invoice), pk=pk)
        archived = request.POST.get("unarchive") != "1"
        services.invoice_archive(partner=self.partner, invoice_id=invoice.pk, archived=archived)
        messages.success(request, "Invoice archived." if archived else "Invoice unarchived.")
        return HttpResponseRedirect(reverse("invoices:detail", args=[invoice.pk]))


class CustomerArchiveView(PartnerRequiredMixin, View):
    """POST: archive (or, with `unarchive=1`, unarchive) a customer, at once (R9)."""

    def post(self, request, pk):
        from customers.services import customer_archive

        customer = get_object_or_404(self.get_partner_queryset(Customer), pk=pk)
        archived = request.POST.get("unarchive") != "1"
        customer_archive(partner=self.partner, customer_id=customer.pk, archived=archived)
        messages.success(request, "Customer archived." if archived else "Customer unarchived.")
        return HttpResponseRedirect(reverse("dashboard:customers"))
