import re
import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View
from django.views.generic import FormView

from config.api import DomainError
from customers import services as customer_services
from customers.models import Customer
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerPageMixin, PartnerPageView
from payments import services as payment_services  # its Idempotency-Key store

from . import services
from .forms import CustomerCreateForm, InvoiceCreateForm
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


# --- customers and invoices created here (R7) -------------------------------------------------
#
# Same permission as archiving (the views above): any user of the partner. Nothing here talks to
# Autotask: the services mark the rows source "local" with no Autotask id, which the sync and
# the paidDate write-back skip.


class _PartnerFormView(PartnerPageMixin, FormView):
    """A dashboard form page: POST, then redirect (and a message) on success; the form again
    with its field errors otherwise, nothing stored.

    Each rendering carries a one-time `submit_token`, used as an Idempotency-Key (the same
    per-partner store as the API's): a double click, or a retried POST, creates one row and is
    sent where the first went. A POST with errors frees its token for the corrected one."""

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["submit_token"] = _submit_token(self.request) or uuid.uuid4().hex
        return ctx

    def post(self, request, *args, **kwargs):
        token = _submit_token(request)
        if token is None:
            return super().post(request, *args, **kwargs)
        key = f"form:{token}"
        fingerprint = payment_services.request_fingerprint("FORM", request.path, token.encode())
        try:
            saved = payment_services.idempotency_key_begin(
                partner=self.partner, key=key, fingerprint=fingerprint
            )
        except DomainError:  # the first POST is still being saved
            messages.info(request, "This form is already being saved.")
            return HttpResponseRedirect(request.path)
        if saved is not None:
            messages.info(request, "Already created (the form was sent twice).")
            return HttpResponseRedirect(saved.response_body["location"])
        try:
            with transaction.atomic():  # the row and the saved answer commit together
                response = super().post(request, *args, **kwargs)
                if response.status_code == 302:
                    payment_services.idempotency_key_finish(
                        partner=self.partner, key=key, status=302, body={"location": response.url}
                    )
        except Exception:
            payment_services.idempotency_key_release(partner=self.partner, key=key)
            raise
        if response.status_code != 302:
            payment_services.idempotency_key_release(partner=self.partner, key=key)
        return response


def _submit_token(request) -> str | None:
    token = request.POST.get("submit_token", "")
    return token if re.fullmatch(r"[0-9a-f]{32}", token) else None


class CustomerCreateView(_PartnerFormView):
    template_name = "customers/new.html"
    form_class = CustomerCreateForm
    nav = "customers"
    title = "New customer"

    def form_valid(self, form):
        customer = customer_services.customer_create_local(
            partner=self.partner, **form.cleaned_data
        )
        messages.success(
            self.request,
            f"Customer {customer.name} created here. It is never sent to Autotask.",
        )
        # Filtered on the new name, so the new row is on the page however long the list is.
        query = urlencode({"q": customer.name})
        return HttpResponseRedirect(f"{reverse('dashboard:customers')}?{query}")


class InvoiceCreateView(_PartnerFormView):
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
