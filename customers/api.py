from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from partners.idempotency import IDEMPOTENCY_HEADER, IDEMPOTENCY_RESPONSES, IdempotentCreateMixin
from partners.tenancy import PartnerViewSetMixin

from . import services as customer_services
from .models import Customer
from .serializers import CustomerCreateSerializer, CustomerSerializer


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("search", str),
            OpenApiParameter("archived", enum=["no", "only", "all"]),
        ]
    )
)
class CustomerViewSet(IdempotentCreateMixin, PartnerViewSetMixin, viewsets.ReadOnlyModelViewSet):
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

    # --- archiving and customers created here (R7, R9) -----------------------------------

    @extend_schema(
        request=CustomerCreateSerializer,
        responses={
            201: CustomerSerializer,
            400: OpenApiResponse(description="Invalid input"),
            **IDEMPOTENCY_RESPONSES,
        },
        parameters=[IDEMPOTENCY_HEADER],
    )
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    def _create(self, request):
        data = CustomerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = customer_services.customer_create_local(
            partner=self.partner, **data.validated_data
        )
        return Response(CustomerSerializer(customer).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: CustomerSerializer})
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._archive(archived=True)

    @extend_schema(request=None, responses={200: CustomerSerializer})
    @action(detail=True, methods=["post"])
    def unarchive(self, request, pk=None):
        return self._archive(archived=False)

    def _archive(self, *, archived: bool):
        customer = self.get_object()  # another partner's customer: 404
        customer = customer_services.customer_archive(
            partner=self.partner, customer_id=customer.pk, archived=archived
        )
        return Response(CustomerSerializer(customer).data)
