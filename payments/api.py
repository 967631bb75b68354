"""`/api/v1/payments/`: list, read, record (POST, with `Idempotency-Key`) and delete payments;
`/api/v1/reconciliation/drift/`: the drift report (payments/selectors.py `drift_report`).

The processor's webhook endpoint is not here: it is a plain Django view (payments/views.py)
that reads the raw body before anything parses it, with no session, CSRF or token auth.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.response import Response

from config.api import (
    BIGINT_MAX,
    ID_PARAMETER_SCHEMA,
    AmountField,
    choice_param,
    int_param,
    ordering_choices,
    ordering_param,
)
from config.listing import parse_date_range, parse_sort
from partners.idempotency import IDEMPOTENCY_HEADER, IdempotentCreateMixin
from partners.tenancy import IsPartnerUser, PartnerViewSetMixin

from .models import Payment, PaymentMethod, PaymentStatus, ReconciliationDrift
from .selectors import PAYMENT_DEFAULT_SORT, PAYMENT_SORTS, REASONS, drift_report
from .services import ledger


class PaymentSerializer(serializers.ModelSerializer):
    invoice_number = serializers.CharField(source="invoice.number", read_only=True, default=None)
    # A plain string, not an enum: "source" already names the invoice/customer enum in the schema.
    source = serializers.CharField(
        read_only=True, help_text="processor (webhook) or manual (recorded by hand)"
    )

    class Meta:
        model = Payment
        fields = [
            "id",
            "invoice",
            "invoice_number",
            "amount",
            "currency",
            "method",
            "source",
            "status",
            "processor_payment_id",
            "note",
            "received_at",
            "refunded_at",
            "deleted_at",
            "created_at",
        ]
        read_only_fields = fields


class PaymentInputSerializer(serializers.Serializer):
    invoice = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX)
    amount = AmountField()
    method = serializers.ChoiceField(choices=PaymentMethod.choices, default=PaymentMethod.OTHER)
    received_at = serializers.DateTimeField(required=False)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("invoice", ID_PARAMETER_SCHEMA),
            OpenApiParameter("status", enum=PaymentStatus.values),
            OpenApiParameter(
                "ordering",
                enum=ordering_choices(PAYMENT_SORTS),
                description=f"Sort field, `-` for descending (default `{PAYMENT_DEFAULT_SORT}`); "
                "any other value is a 400.",
            ),
            OpenApiParameter(
                "from", OpenApiTypes.DATE, description="Received on or after (YYYY-MM-DD, UTC)"
            ),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, description="Received on or before (YYYY-MM-DD, UTC)"
            ),
        ]
    )
)
class PaymentViewSet(
    IdempotentCreateMixin,
    PartnerViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The partner's payments (deleted ones included, with their status)."""

    partner_model = Payment
    queryset = Payment.objects.none()
    serializer_class = PaymentSerializer

    def filter_partner_queryset(self, queryset):
        queryset = queryset.select_related("invoice")
        p = self.request.query_params
        # Invalid filter values answer 400 naming the parameter (config/api.py).
        invoice_id = int_param(p, "invoice")
        if invoice_id is not None:
            queryset = queryset.filter(invoice_id=invoice_id)
        status_filter = choice_param(p, "status", PaymentStatus.values)
        if status_filter:
            queryset = queryset.filter(status=status_filter)
        if self.action == "list":
            dates = parse_date_range(p)
            if dates.error:
                raise serializers.ValidationError({"from": [dates.error]}, code="invalid_date")
            # UTC days: an API client's dates do not depend on who signed in.
            if dates.start:
                start = datetime.combine(dates.start, time.min, tzinfo=UTC)
                queryset = queryset.filter(received_at__gte=start)
            if dates.end:
                end = datetime.combine(dates.end + timedelta(days=1), time.min, tzinfo=UTC)
                queryset = queryset.filter(received_at__lt=end)
        ordering = ordering_param(p, PAYMENT_SORTS)  # an unknown value: 400 naming it
        sort = parse_sort(ordering, PAYMENT_SORTS, PAYMENT_DEFAULT_SORT)
        return queryset.order_by(*sort.order_by)

    @extend_schema(
        request=PaymentInputSerializer,
        responses={
            201: PaymentSerializer,
            400: OpenApiResponse(description="Invalid, or more than the outstanding balance"),
            404: OpenApiResponse(description="No such invoice"),
            409: OpenApiResponse(description="Invoice archived/void, or key still in use"),
            422: OpenApiResponse(description="Idempotency-Key reused with another body"),
        },
        parameters=[IDEMPOTENCY_HEADER],
    )
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    def _create(self, request):
        data = PaymentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        payment = ledger.payment_record(
            partner=self.partner,
            invoice_id=v["invoice"],
            amount=v["amount"],
            method=v["method"],
            received_at=v.get("received_at"),
            note=v.get("note", ""),
            actor=request.user,
        )
        payment = (
            Payment.objects.for_partner(self.partner).select_related("invoice").get(pk=payment.pk)
        )
        return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="Invoice archived")})
    def destroy(self, request, *args, **kwargs):
        payment = self.get_object()  # 404 for another partner's payment
        ledger.payment_delete(partner=self.partner, payment_id=payment.pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DriftEntrySerializer(serializers.Serializer):
    invoice = serializers.IntegerField(read_only=True, help_text="The invoice's id")
    invoice_number = serializers.CharField(read_only=True)
    # A plain string, not an enum: "reason" names other enums in the schema.
    reason = serializers.CharField(read_only=True, help_text="One of: " + ", ".join(REASONS) + ".")
    reason_label = serializers.CharField(read_only=True)
    detail = serializers.CharField(read_only=True)
    action = serializers.CharField(
        read_only=True, help_text="The one action that resolves it, in a plain sentence"
    )
    since = serializers.DateTimeField(read_only=True)
    replacement = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="voided_after_payment: the invoice proposed to take its payments "
        "(POST /api/v1/invoices/{invoice}/move-payments/).",
    )
    replacement_number = serializers.CharField(read_only=True)


@extend_schema(
    summary="Reconciliation drift report",
    description="Every invoice whose state here and in Autotask differ: open drift (an "
    "Autotask read contradicted our ledger), write-backs parked or failed, and write-backs "
    "pending. Newest first, paginated.",
    responses=DriftEntrySerializer(many=True),
)
class DriftView(PartnerViewSetMixin, generics.ListAPIView):
    permission_classes = [IsPartnerUser]
    partner_model = ReconciliationDrift
    queryset = ReconciliationDrift.objects.none()
    serializer_class = DriftEntrySerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular schema generation
            return []
        return drift_report(partner=self.partner)
