"""`/api/v1/payments/`: list, read, record (POST, with `Idempotency-Key`) and delete payments.

The processor's webhook endpoint is not here: it is a plain Django view (payments/views.py)
that reads the raw body before anything parses it, with no session, CSRF or token auth.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from config.api import DomainError
from partners.tenancy import PartnerViewSetMixin

from . import services
from .models import Payment, PaymentMethod, PaymentStatus


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


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Same key and body within 24 h: the first response again. Other body: 422. "
    "First still running: 409.",
)


IDEMPOTENCY_RESPONSES = {
    409: OpenApiResponse(description="Idempotency-Key still in use, or what it names is archived"),
    422: OpenApiResponse(description="Idempotency-Key reused with another body"),
}


class IdempotentCreateMixin:
    """`create()` honouring `Idempotency-Key` (per partner, payments/services.py): same key and
    body → the saved response again (`Idempotent-Replayed: true`), another body → 422, the first
    still running → 409. The view implements `_create(request)`; its effect and the saved
    answer commit together."""

    def create(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self._create(request)
        fingerprint = services.request_fingerprint(request.method, request.path, request.body)
        saved = services.idempotency_key_begin(
            partner=self.partner, key=key, fingerprint=fingerprint
        )
        if saved is not None:
            response = Response(saved.response_body, status=saved.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            with transaction.atomic():
                # The effect and the saved answer commit together: a crash leaves neither.
                try:
                    response = self._create(request)
                except DomainError as exc:
                    response = Response(
                        {"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.status
                    )
                except serializers.ValidationError as exc:
                    response = Response(exc.detail, status=status.HTTP_400_BAD_REQUEST)
                body = json.loads(json.dumps(response.data, default=str))
                services.idempotency_key_finish(
                    partner=self.partner, key=key, status=response.status_code, body=body
                )
        except Exception:
            services.idempotency_key_release(partner=self.partner, key=key)
            raise
        return response


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
        payment = services.payment_record(
            partner=self.partner,
            invoice_id=v["invoice"],
            amount=v["amount"],
            method=v["method"],
            received_at=v.get("received_at"),
            note=v.get("note", ""),
            actor=request.user,
        )
        payment = Payment.objects.select_related("invoice").get(pk=payment.pk)
        return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="Invoice archived")})
    def destroy(self, request, *args, **kwargs):
        payment = self.get_object()  # 404 for another partner's payment
        services.payment_delete(partner=self.partner, payment_id=payment.pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
