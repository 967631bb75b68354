from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import ErrorSerializer, choice_param
from partners.tenancy import PartnerViewSetMixin

from .models import ChangeLogEntry, SyncRun
from .selectors import manual_sync_availability, manual_sync_status, partner_zone
from .serializers import (
    ChangeSerializer,
    CooldownErrorSerializer,
    ManualSyncStartedSerializer,
    ManualSyncStatusSerializer,
    SyncRunSerializer,
)
from .services.manual import manual_sync_start


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
        # An unknown value is a 400 naming the parameter, as on every list (config/api.py).
        params = self.request.query_params
        if kind := choice_param(params, "kind", SyncRun.Kind.values):
            queryset = queryset.filter(kind=kind)
        if run_status := choice_param(params, "status", SyncRun.Status.values):
            queryset = queryset.filter(status=run_status)
        return queryset

    @extend_schema(responses=ChangeSerializer(many=True))
    @action(detail=True)
    def changes(self, request, pk=None):
        run = self.get_object()
        qs = ChangeLogEntry.objects.for_partner(self.partner).filter(run=run).order_by("id")
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(ChangeSerializer(page, many=True).data)


# --- Manual syncs (R10): thin views over sync/services/manual.py and sync/selectors.py ---------


class _ManualSyncStartView(PartnerViewSetMixin, generics.GenericAPIView):
    partner_model = SyncRun
    queryset = SyncRun.objects.none()
    serializer_class = ManualSyncStartedSerializer
    kind: str = ""

    def post(self, request):
        run = manual_sync_start(partner=self.partner, kind=self.kind, user=request.user)
        nxt = manual_sync_availability(partner=self.partner, now=run.created_at)[self.kind]
        url = request.build_absolute_uri(reverse("api:sync-run-detail", args=[run.pk]))
        body = {
            "id": run.pk,
            "url": url,
            "page_url": reverse("sync:run-detail", args=[run.pk]),
            "kind": run.kind,
            "status": run.status,
            "next_available_at": nxt.local_at,
        }
        with timezone.override(partner_zone(self.partner)):  # times in the partner's zone
            data = ManualSyncStartedSerializer(body).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


_START_RESPONSES = {
    202: ManualSyncStartedSerializer,
    403: OpenApiResponse(
        ErrorSerializer,
        description="Manual syncs are only for partners whose primary integration is Autotask "
        "and whose Autotask is connected (code `manual_sync_unavailable`).",
    ),
    429: OpenApiResponse(
        CooldownErrorSerializer,
        description="Inside the cooldown (code `cooldown`): `Retry-After` header in seconds, "
        "`available_at` in the body.",
    ),
}


@extend_schema(
    request=None,
    responses=_START_RESPONSES,
    summary="Fetch New Data (at most once an hour)",
    description="Starts a sync of invoices created, and customers created or changed, in "
    "Autotask within the last hour, plus a re-read of the unpaid invoices created in the last "
    "30 days (the 800 newest: paid or voided in Autotask since). Allowed once an hour per "
    "partner, counted from the start of the last accepted manual run; a run that failed on "
    "our side does not count. The run waits for any other sync of the partner in progress.",
)
class FetchNewDataView(_ManualSyncStartView):
    kind = SyncRun.Kind.NEW_DATA


@extend_schema(
    request=None,
    responses=_START_RESPONSES,
    summary="Fetch Unpaid Invoices (at most once every 12 hours)",
    description="Starts a re-read of every unpaid invoice from Autotask; any mismatch (amount, "
    "outstanding amount, due date, status) is corrected here and recorded in the run's change "
    "list. Allowed once every 12 hours per partner.",
)
class FetchUnpaidInvoicesView(_ManualSyncStartView):
    kind = SyncRun.Kind.UNPAID


class ManualSyncStatusView(PartnerViewSetMixin, generics.GenericAPIView):
    """When each manual sync may start next, the last manual run of each, and the partner's
    sync in progress."""

    partner_model = SyncRun
    queryset = SyncRun.objects.none()
    serializer_class = ManualSyncStatusSerializer

    @extend_schema(responses={200: ManualSyncStatusSerializer}, summary="Manual sync status")
    def get(self, request):
        data = manual_sync_status(partner=self.partner)
        with timezone.override(partner_zone(self.partner)):  # times in the partner's zone
            body = ManualSyncStatusSerializer(data, context={"request": request}).data
        return Response(body)
