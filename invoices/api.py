from decimal import Decimal

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import (
    ARCHIVED_CHOICES,
    BIGINT_MAX,
    ID_PARAMETER_SCHEMA,
    AmountField,
    NonNegativeAmountField,
    bool_param,
    choice_param,
    int_param,
    ordering_choices,
    ordering_param,
)
from config.listing import DateRange, parse_date_range
from partners.idempotency import IDEMPOTENCY_HEADER, IDEMPOTENCY_RESPONSES, IdempotentCreateMixin
from partners.tenancy import PartnerViewSetMixin
from payments.services import ledger
from payments.timeline import invoice_timeline

from . import services as invoice_services
from .models import Invoice, InvoiceStatus
from .pdf import PdfUnavailable, invoice_pdf
from .selectors import INVOICE_DATE_FIELDS, INVOICE_DEFAULT_SORT, INVOICE_SORTS, invoice_list
from .serializers import (
    InvoiceSerializer,
    MovePaymentsSerializer,
    PaymentMoveSerializer,
    TimelineEntrySerializer,
)


class InvoiceCreateSerializer(serializers.Serializer):
    """An invoice created here (source "local"); it is never sent to Autotask (R7)."""

    customer_id = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX)
    number = serializers.CharField(max_length=100)
    invoice_date = serializers.DateField()
    due_date = serializers.DateField(required=False, allow_null=True)
    total = AmountField(help_text="Including tax.")
    tax = NonNegativeAmountField(default=Decimal("0.00"))
    currency = serializers.RegexField(
        r"^[A-Za-z]{3}$",
        required=False,
        help_text="ISO code, e.g. EUR. Optional: the customer's currency (must match it if the "
        "customer has one).",
    )

    def validate(self, attrs):
        # The same rules as the dashboard's form (invoices/forms.py InvoiceCreateForm).
        errors = {}
        due, issued = attrs.get("due_date"), attrs["invoice_date"]
        if due is not None and due < issued:
            errors["due_date"] = ["The due date cannot be before the invoice date."]
        if attrs["tax"] > attrs["total"]:
            errors["tax"] = ["Tax cannot be more than the total, which includes it."]
        if errors:
            raise serializers.ValidationError(errors)
        if attrs.get("currency"):
            attrs["currency"] = attrs["currency"].upper()
        return attrs


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Part of the number or customer name"),
            OpenApiParameter("status", enum=InvoiceStatus.values),
            OpenApiParameter("customer", ID_PARAMETER_SCHEMA),
            OpenApiParameter("archived", enum=["no", "only", "all"]),
            OpenApiParameter("missing", bool, description="Only those no longer in Autotask"),
            OpenApiParameter(
                "ordering",
                enum=ordering_choices(INVOICE_SORTS),
                description=f"Sort field, `-` for descending (default `{INVOICE_DEFAULT_SORT}`); "
                "any other value is a 400.",
            ),
            OpenApiParameter(
                "dates",
                enum=list(INVOICE_DATE_FIELDS),
                description="Which date `from`/`to` filter: the invoice date (default) or the "
                "due date.",
            ),
            OpenApiParameter("from", OpenApiTypes.DATE, description="On or after (YYYY-MM-DD)"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="On or before (YYYY-MM-DD)"),
        ]
    )
)
class InvoiceViewSet(IdempotentCreateMixin, PartnerViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The partner's invoices (archived ones hidden unless `archived=only|all`)."""

    partner_model = Invoice
    queryset = Invoice.objects.none()
    serializer_class = InvoiceSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        p = self.request.query_params
        # Invalid filter values answer 400 naming the parameter (config/api.py).
        customer = int_param(p, "customer")
        status_filter = choice_param(p, "status", InvoiceStatus.values)
        archived = choice_param(p, "archived", ARCHIVED_CHOICES, default="no")
        missing = bool_param(p, "missing")
        ordering = ordering_param(p, INVOICE_SORTS)
        date_field = choice_param(p, "dates", INVOICE_DATE_FIELDS, default="invoice")
        if self.action != "list":
            archived = "all"  # a detail or PDF link works for archived invoices too
        dates = parse_date_range(p) if self.action == "list" else DateRange()
        if dates.error:
            raise serializers.ValidationError({"from": [dates.error]}, code="invalid_date")
        return invoice_list(
            partner=self.partner,
            search=p.get("search", "")[:100],
            status=status_filter,
            customer_id=customer,
            archived=archived,
            missing=missing,
            sort=ordering,
            date_field=date_field,
            date_from=dates.start,
            date_to=dates.end,
        )

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="Not found or no PDF"),
            409: OpenApiResponse(description="Autotask is not connected"),
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

    @extend_schema(
        operation_id="invoices_timeline",
        summary="The invoice's timeline",
        description=(
            "Everything that happened to the invoice, oldest first: the sync run that brought "
            "it, every change (old → new), payments, each write-back to Autotask with "
            "Autotask's answer, and reconciliation drift. It answers \"why is this invoice "
            '(not) paid or (not) synced?".'
        ),
        responses={
            200: TimelineEntrySerializer(many=True),
            404: OpenApiResponse(description="Not found"),
        },
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def timeline(self, request, pk=None):
        invoice = self.get_object()  # another partner's invoice: 404
        entries = invoice_timeline(partner=self.partner, invoice=invoice)
        return Response(TimelineEntrySerializer(entries, many=True).data)

    @extend_schema(
        operation_id="invoices_move_payments",
        summary="Move a voided invoice's payments to its replacement",
        description=(
            "For an invoice voided in Autotask after payments were applied to it here (drift "
            "reason `voided_after_payment`): moves its succeeded payments to `to_invoice`, the "
            "invoice Autotask issued in its place (same customer and currency, open), in one "
            "audited step; the write-back to Autotask follows the new invoice. Answers the "
            "moves (an empty list when nothing was left to move). 409 with a `code` when the "
            "move is not allowed."
        ),
        request=MovePaymentsSerializer,
        responses={
            200: PaymentMoveSerializer(many=True),
            400: OpenApiResponse(description="Invalid input"),
            404: OpenApiResponse(description="Not found"),
            409: OpenApiResponse(description="Not allowed (see code)"),
        },
    )
    @action(detail=True, methods=["post"], url_path="move-payments")
    def move_payments(self, request, pk=None):
        invoice = self.get_object()  # another partner's invoice: 404
        data = MovePaymentsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        moves = ledger.payments_move(
            partner=self.partner,
            from_invoice_id=invoice.pk,
            to_invoice_id=data.validated_data["to_invoice"],
            user=request.user,
            via="api",
        )
        return Response(PaymentMoveSerializer(moves, many=True).data)

    # --- archiving and invoices created here (R7, R9) ------------------------------------

    @extend_schema(
        request=InvoiceCreateSerializer,
        responses={
            201: InvoiceSerializer,
            400: OpenApiResponse(description="Invalid input"),
            **IDEMPOTENCY_RESPONSES,
        },
        parameters=[IDEMPOTENCY_HEADER],
    )
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    def _create(self, request):
        data = InvoiceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invoice = invoice_services.invoice_create_local(partner=self.partner, **data.validated_data)
        body = InvoiceSerializer(invoice, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: InvoiceSerializer})
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._archive(archived=True)

    @extend_schema(request=None, responses={200: InvoiceSerializer})
    @action(detail=True, methods=["post"])
    def unarchive(self, request, pk=None):
        return self._archive(archived=False)

    def _archive(self, *, archived: bool):
        invoice = self.get_object()  # another partner's invoice: 404
        invoice = invoice_services.invoice_archive(
            partner=self.partner, invoice_id=invoice.pk, archived=archived
        )
        return Response(InvoiceSerializer(invoice, context=self.get_serializer_context()).data)
