"""The processor webhook endpoint and the dashboard's payment pages."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.api import DomainError
from config.listing import csv_response, parse_date_range, parse_sort, query_without, sort_headers
from invoices.models import Invoice
from partners.tenancy import PartnerRequiredMixin
from partners.views import PartnerPageView

from . import webhooks
from .models import Payment, PaymentMethod, PaymentStatus, WebhookEvent
from .selectors import PAYMENT_DEFAULT_SORT, PAYMENT_SORTS, drift_report
from .services import ledger, payment_settings, webhook_events


@csrf_exempt  # signed by the processor; no cookies, no session, no CSRF token
@require_POST
def webhook_receive(request, endpoint_id: str):
    """`POST /api/v1/payments/webhooks/{endpoint_id}/` (Standard Webhooks). The raw body is
    verified before anything parses it; see webhook_events.webhook_event_receive for the answers."""
    body = _webhook_body(request)
    receipt = webhook_events.webhook_event_receive(
        endpoint_id=endpoint_id[:40], headers=request.headers, body=body
    )
    return JsonResponse(receipt.body, status=receipt.status)


def _webhook_body(request) -> bytes:
    """The raw body, never more than the limit + 1 byte (a longer one answers 413).

    A chunked delivery has no Content-Length, and Django then reads an empty body; the server
    says the stream ends by itself (`wsgi.input_terminated`, set by gunicorn), so it is read
    from `wsgi.input` directly."""
    limit = webhooks.MAX_BODY_BYTES + 1
    raw_length = request.META.get("CONTENT_LENGTH")
    if not raw_length and request.META.get("wsgi.input_terminated"):
        stream = request.META["wsgi.input"]
        chunks, size = [], 0
        while size < limit:
            chunk = stream.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    try:
        declared = int(raw_length or 0)
    except ValueError:
        declared = 0
    return request.read(limit) if declared > webhooks.MAX_BODY_BYTES else request.body


# --- dashboard --------------------------------------------------------------------------------


PAYMENT_COLUMNS = [
    ("Received", "received_at"),
    ("Invoice", "invoice"),
    ("Amount", "amount"),
    ("Method", "method"),
    ("Source", None),
    ("Status", "status"),
    ("", None),
]
CSV_CHUNK = 2000


def _day_start(day: date) -> datetime:
    # Midnight in the active (partner's) zone: the received date is the partner's day.
    return timezone.make_aware(datetime.combine(day, time.min))


def _payment_filters(view):
    """The list's filters from the query string: (queryset, status, date range)."""
    g = view.request.GET
    qs = view.get_partner_queryset(Payment).select_related("invoice")
    status = g.get("status", "")
    if status in PaymentStatus.values:
        qs = qs.filter(status=status)
    dates = parse_date_range(g)
    if dates.start:
        qs = qs.filter(received_at__gte=_day_start(dates.start))
    if dates.end:
        qs = qs.filter(received_at__lt=_day_start(dates.end + timedelta(days=1)))
    sort = parse_sort(g.get("sort"), PAYMENT_SORTS, PAYMENT_DEFAULT_SORT)
    return qs.order_by(*sort.order_by), status, dates, sort


class PaymentListView(PartnerPageView):
    template_name = "payments/list.html"
    nav = "payments"
    title = "Payments"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        qs, status, dates, sort = _payment_filters(self)
        # The totals row counts what was received: succeeded payments of the filtered rows.
        totals = (
            qs.filter(status=PaymentStatus.SUCCEEDED)
            .order_by()
            .values("currency")
            .annotate(n=Count("id"), amount=Sum("amount"))
            .order_by("currency")
        )
        ctx.update(
            page=Paginator(qs, 50).get_page(g.get("page")),
            totals=list(totals),
            headers=sort_headers(g, sort, PAYMENT_COLUMNS),
            sort=sort.key,
            dates_range=dates,
            query=query_without(g, "page"),
            statuses=PaymentStatus.choices,
            status=status,
            parked=self.get_partner_queryset(WebhookEvent)
            .filter(status=WebhookEvent.Status.PARKED)
            .count(),
        )
        return ctx


class PaymentExportView(PartnerRequiredMixin, View):
    """`/payments/export.csv`: the filtered list (every page, in the list's order), streamed."""

    def get(self, request):
        qs, _status, dates, _sort = _payment_filters(self)
        if dates.error:
            return HttpResponse(dates.error, status=400, content_type="text/plain")
        zone = timezone.get_current_timezone()
        rows = qs.values_list(
            "received_at",
            "invoice__number",
            "amount",
            "currency",
            "method",
            "source",
            "processor_payment_id",
            "status",
            "note",
        ).iterator(chunk_size=CSV_CHUNK)

        def lines():
            for received, *rest in rows:
                yield (timezone.localtime(received, zone).isoformat(), *rest)

        header = [
            "Received",
            "Invoice",
            "Amount",
            "Currency",
            "Method",
            "Source",
            "Processor payment id",
            "Status",
            "Note",
        ]
        today = timezone.localdate()
        return csv_response(f"payments-{today:%Y-%m-%d}.csv", header, lines())


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
            new_secret=kwargs.get("new_secret"),
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
                # Shown once, on the answer to this POST itself: never kept in the session
                # (django_session is not encrypted) or anywhere else in clear; not cached.
                response = self.render_to_response(self.get_context_data(new_secret=secret))
                response["Cache-Control"] = "no-store"
                return response
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
