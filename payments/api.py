"""`/api/v1/payments/`: list, read, record (POST, with `Idempotency-Key`) and delete payments;
`/api/v1/reconciliation/drift/`: the drift report (payments/selectors.py `drift_report`).

The processor's webhook endpoint is not here: it is a plain Django view (payments/views.py)
that reads the raw body before anything parses it, with no session, CSRF or token auth.
"""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.response import Response

from partners.idempotency import IDEMPOTENCY_HEADER, IdempotentCreateMixin
from partners.tenancy import IsPartnerUser, PartnerViewSetMixin

from .models import Payment, PaymentMethod, PaymentStatus, ReconciliationDrift
from .selectors import REASONS, drift_report
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
    invoice = serializers.IntegerField(min_value=1)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    method = serializers.ChoiceField(choices=PaymentMethod.choices, default=PaymentMethod.OTHER)
    received_at = serializers.DateTimeField(required=False)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


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
        if p.get("invoice", "").isdigit():
            queryset = queryset.filter(invoice_id=int(p["invoice"]))
        if p.get("status") in PaymentStatus.values:
            queryset = queryset.filter(status=p["status"])
        return queryset

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
