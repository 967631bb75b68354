from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action

from partners.tenancy import PartnerViewSetMixin

from .models import ChangeLogEntry, SyncRun
from .serializers import ChangeSerializer, SyncRunSerializer


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("kind", enum=SyncRun.Kind.values),
            OpenApiParameter("status", enum=SyncRun.Status.values),
        ]
    )
)
class SyncRunViewSet(PartnerViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The partner's sync runs, newest first, with counts, cost and errors."""

    partner_model = SyncRun
    queryset = SyncRun.objects.none()
    serializer_class = SyncRunSerializer

    def filter_partner_queryset(self, queryset):
        params = self.request.query_params
        if params.get("kind") in SyncRun.Kind.values:
            queryset = queryset.filter(kind=params["kind"])
        if params.get("status") in SyncRun.Status.values:
            queryset = queryset.filter(status=params["status"])
        return queryset

    @extend_schema(responses=ChangeSerializer(many=True))
    @action(detail=True)
    def changes(self, request, pk=None):
        run = self.get_object()
        qs = ChangeLogEntry.objects.for_partner(self.partner).filter(run=run).order_by("id")
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(ChangeSerializer(page, many=True).data)
