"""The processor webhook endpoint and the dashboard's payment pages."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.api import DomainError
from invoices.models import Invoice
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerPageView

from . import webhooks
from .models import Payment, PaymentMethod, PaymentStatus, WebhookEvent
from .selectors import drift_report
from .services import ledger, payment_settings, webhook_events


@csrf_exempt  # signed by the processor; no cookies, no session, no CSRF token
@require_POST
def webhook_receive(request, endpoint_id: str):
    """`POST /api/v1/payments/webhooks/{endpoint_id}/` (Standard Webhooks). The raw body is
    verified before anything parses it; see webhook_events.webhook_event_receive for the answers."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # Never read more than the limit + 1 byte of an oversized body.
    body = (
        request.read(webhooks.MAX_BODY_BYTES + 1)
        if declared > webhooks.MAX_BODY_BYTES
        else request.body
    )
    receipt = webhook_events.webhook_event_receive(
        endpoint_id=endpoint_id[:40], headers=request.headers, body=body
    )
    return JsonResponse(receipt.body, status=receipt.status)


# --- dashboard --------------------------------------------------------------------------------


class PaymentListView(PartnerPageView):
    template_name = "payments/list.html"
    nav = "payments"
    title = "Payments"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        qs = self.get_partner_queryset(Payment).select_related("invoice")
        status = g.get("status", "")
        if status in PaymentStatus.values:
            qs = qs.filter(status=status)
        ctx.update(
            page=Paginator(qs, 50).get_page(g.get("page")),
            statuses=PaymentStatus.choices,
            status=status,
            parked=self.get_partner_queryset(WebhookEvent)
            .filter(status=WebhookEvent.Status.PARKED)
            .count(),
        )
        return ctx


class DriftReportView(PartnerPageView):
    """Reconciliation: every invoice whose state here and in Autotask differ, its reason and the
    one action that resolves it (payments/selectors.py `drift_report`)."""

    template_name = "payments/drift.html"
    nav = "payments"
    title = "Reconciliation"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        entries = drift_report(partner=self.partner)
        ctx["page"] = Paginator(entries, 50).get_page(self.request.GET.get("page"))
        return ctx


class PaymentSettingsView(PartnerPageView):
    """The webhook endpoint: its URL, secret rotation (new secret shown once), the last
    deliveries and their outcome."""

    template_name = "payments/settings.html"
    nav = "payments"
    title = "Payment settings"
    manager_only = True

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        settings_obj = payment_settings.payment_settings_get(partner=self.partner)
        ctx.update(
            settings=settings_obj,
            webhook_url=self.request.build_absolute_uri(
                reverse("api:payment-webhook", args=[settings_obj.endpoint_id])
            )
            if settings_obj
            else "",
            new_secret=self.request.session.pop("payments_new_secret", None),
            deliveries=self.get_partner_queryset(WebhookEvent).order_by("-received_at", "-id")[:50],
        )
        return ctx

    def post(self, request, *args, **kwargs):
        action = request.POST.get("action")
        if action in ("create", "rotate"):
            if action == "create":
                _, secret = payment_settings.payment_settings_create(partner=self.partner)
            else:
                _, secret = payment_settings.payment_settings_rotate_secret(partner=self.partner)
            if secret:
                # Shown on the next page view only, then gone from the session.
                request.session["payments_new_secret"] = secret
                messages.success(request, "Copy the new secret now: it is shown only once.")
        elif action == "overpayment":
            payment_settings.payment_settings_update(
                partner=self.partner, allow_overpayment=request.POST.get("allow") == "1"
            )
            messages.success(request, "Saved.")
        return HttpResponseRedirect(reverse("payments:settings"))


class PaymentRecordView(PartnerRequiredMixin, View):
    """Record a payment by hand (from the invoice page)."""

    def post(self, request, invoice_pk):
        invoice = get_object_or_404(self.get_partner_queryset(Invoice), pk=invoice_pk)
        try:
            amount = Decimal(request.POST.get("amount", "").strip())
        except InvalidOperation:
            amount = None
        method = request.POST.get("method", PaymentMethod.OTHER)
        if method not in PaymentMethod.values:
            method = PaymentMethod.OTHER
        try:
            if amount is None or not amount.is_finite():
                raise DomainError("Enter an amount.", code="invalid_amount")
            ledger.payment_record(
                partner=self.partner,
                invoice_id=invoice.pk,
                amount=amount.quantize(Decimal("0.01")),
                method=method,
                note=request.POST.get("note", ""),
                actor=request.user,
            )
            messages.success(request, "Payment recorded.")
        except DomainError as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("invoices:detail", args=[invoice.pk]))


class PaymentsMoveView(PartnerRequiredMixin, View):
    """POST `to_invoice`: move a voided invoice's payments to its replacement
    (ledger.payments_move), from the reconciliation page or the invoice page."""

    def post(self, request, invoice_pk):
        invoice = get_object_or_404(self.get_partner_queryset(Invoice), pk=invoice_pk)
        try:
            to_invoice = int(request.POST.get("to_invoice", ""))
        except ValueError:
            messages.error(request, "Choose the invoice to move the payments to.")
        else:
            try:
                moves = ledger.payments_move(
                    partner=self.partner,
                    from_invoice_id=invoice.pk,
                    to_invoice_id=to_invoice,
                    user=request.user,
                    via="dashboard",
                )
                messages.success(
                    request,
                    f"{len(moves)} payment(s) moved from invoice {invoice.number}."
                    if moves
                    else "No payment was left to move.",
                )
                return HttpResponseRedirect(reverse("invoices:detail", args=[to_invoice]))
            except DomainError as exc:
                messages.error(request, exc.message)
        if request.POST.get("next") == "drift":
            return HttpResponseRedirect(reverse("payments:drift"))
        return HttpResponseRedirect(reverse("invoices:detail", args=[invoice.pk]))


class PaymentDeleteView(PartnerRequiredMixin, View):
    def post(self, request, pk):
        payment = get_object_or_404(self.get_partner_queryset(Payment), pk=pk)
        try:
            ledger.payment_delete(partner=self.partner, payment_id=payment.pk, actor=request.user)
            messages.success(request, "Payment deleted.")
        except DomainError as exc:
            messages.error(request, exc.message)
        target = request.POST.get("next")
        if target == "invoice" and payment.invoice_id:
            return HttpResponseRedirect(reverse("invoices:detail", args=[payment.invoice_id]))
        return HttpResponseRedirect(reverse("dashboard:payments"))
