from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from customers.models import Customer
from partners.tenancy import PartnerViewSetMixin

from .models import Invoice, InvoiceStatus
from .pdf import PdfUnavailable, invoice_pdf
from .selectors import invoice_list
from .serializers import CustomerSerializer, InvoiceSerializer


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Part of the number or customer name"),
            OpenApiParameter("status", enum=InvoiceStatus.values),
            OpenApiParameter("customer", int),
            OpenApiParameter("archived", enum=["no", "only", "all"]),
            OpenApiParameter("missing", bool, description="Only those no longer in Autotask"),
        ]
    )
)
class InvoiceViewSet(PartnerViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The partner's invoices (archived ones hidden unless `archived=only|all`)."""

    partner_model = Invoice
    queryset = Invoice.objects.none()
    serializer_class = InvoiceSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        p = self.request.query_params
        customer = p.get("customer")
        archived = p.get("archived", "no")
        if self.action != "list":
            archived = "all"  # a detail or PDF link works for archived invoices too
        return invoice_list(
            partner=self.partner,
            search=p.get("search", "")[:100],
            status=p.get("status", ""),
            customer_id=int(customer) if customer and customer.isdigit() else None,
            archived=archived,
            missing=p.get("missing") in ("1", "true"),
        )

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="Not found or no PDF"),
            503: OpenApiResponse(description="Autotask unavailable"),
        }
    )
    @action(detail=True, url_path="pdf")
    def pdf(self, request, pk=None):
        invoice = self.get_object()
        try:
            pdf = invoice_pdf(invoice)
        except PdfUnavailable as exc:
            return Response({"detail": exc.message, "code": "pdf_unavailable"}, status=exc.status)
        response = HttpResponse(pdf.content, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{pdf.filename}"'
        if pdf.stale:
            response["X-PDF-Stale"] = "1"
        return response


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("search", str),
            OpenApiParameter("archived", enum=["no", "only", "all"]),
        ]
    )
)
class CustomerViewSet(PartnerViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The partner's customers."""

    partner_model = Customer
    queryset = Customer.objects.none()
    serializer_class = CustomerSerializer

    def filter_partner_queryset(self, queryset):
        p = self.request.query_params
        archived = p.get("archived", "no") if self.action == "list" else "all"
        if archived == "only":
            queryset = queryset.filter(archived_at__isnull=False)
        elif archived != "all":
            queryset = queryset.filter(archived_at__isnull=True)
        if p.get("search"):
            queryset = queryset.filter(name__icontains=p["search"][:100])
        return queryset
