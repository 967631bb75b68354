from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import ARCHIVED_CHOICES, choice_param, ordering_choices, ordering_param
from config.listing import parse_sort
from partners.idempotency import IDEMPOTENCY_HEADER, IDEMPOTENCY_RESPONSES, IdempotentCreateMixin
from partners.tenancy import PartnerViewSetMixin

from . import services as customer_services
from .models import Customer
from .serializers import CustomerCreateSerializer, CustomerSerializer

# The API's orders (the dashboard's list also sorts by outstanding: customers/views.py).
SORTS = {"name": ("name",), "number": ("number",), "city": ("city",), "currency": ("currency",)}


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("search", str),
            OpenApiParameter("archived", enum=["no", "only", "all"]),
            OpenApiParameter(
                "ordering",
                enum=ordering_choices(SORTS),
                description="Sort field, `-` for descending (default `name`); any other "
                "value is a 400.",
            ),
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
        archived = (
            choice_param(p, "archived", ARCHIVED_CHOICES, default="no")
            if self.action == "list"
            else "all"
        )
        if archived == "only":
            queryset = queryset.filter(archived_at__isnull=False)
        elif archived != "all":
            queryset = queryset.filter(archived_at__isnull=True)
        if p.get("search"):
            queryset = queryset.filter(name__icontains=p["search"][:100])
        ordering = ordering_param(p, SORTS)  # an unknown value: 400 naming it
        return queryset.order_by(*parse_sort(ordering, SORTS, "name").order_by)

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
