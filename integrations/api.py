"""`/api/v1/integrations/autotask/`: the same connect, edit, disconnect and preview as the
dashboard, with the same validation and errors (integrations/services.py)."""

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import DomainError, ErrorSerializer
from partners.tenancy import IsPartnerManager, IsPartnerUser

from . import connect, services
from .models import AutotaskConnection
from .selectors import connection_for


class ConnectionSerializer(serializers.ModelSerializer):
    """A connection as shown: never the secret, the username only masked."""

    username = serializers.CharField(source="masked_username", read_only=True)
    filters = serializers.JSONField(read_only=True)

    class Meta:
        model = AutotaskConnection
        fields = [
            "status",
            "account_email",
            "username",
            "identifier",
            "filters",
            "zone_name",
            "zone_url",
            "connected_at",
            "disconnected_at",
            "schedules_paused",
            "last_error_kind",
            "last_error_message",
            "last_error_at",
            "attention_since",
        ]
        read_only_fields = fields


FILTER_VALUES = {
    "company_types": "Autotask company types (ids), a list or comma-separated",
    "include_company_ids": "only these companies (ids), a list or comma-separated",
    "exclude_company_ids": "never these companies (ids), a list or comma-separated",
    "active_only": "true: active companies only",
    "invoices_from": "invoices dated on or after (YYYY-MM-DD, 2000-01-01 to today)",
    "min_total": 'invoices of at least this total ("99.50")',
    "payment_terms": "Autotask payment terms (ids), a list or comma-separated",
    "include_voided": "true: voided invoices too",
}


@extend_schema_field(
    {
        "type": "object",
        # The keys are these; each value is checked by integrations/filters.py (400
        # `invalid_filters` with a message per key), which also takes null or "" for "not set".
        "properties": {key: {"description": text} for key, text in FILTER_VALUES.items()},
        "additionalProperties": False,
        "description": "Connect filters; none: every customer and invoice.",
    }
)
class FiltersField(serializers.DictField):
    pass


class ConnectInputSerializer(serializers.Serializer):
    account_email = serializers.EmailField()
    username = serializers.CharField(max_length=200)
    secret = serializers.CharField(max_length=200, write_only=True)
    identifier = serializers.ChoiceField(
        choices=AutotaskConnection.Identifier.choices,
        default=AutotaskConnection.Identifier.INVOICE_NUMBER,
    )
    filters = FiltersField(required=False, default=dict)


class UpdateInputSerializer(serializers.Serializer):
    account_email = serializers.EmailField(required=False)
    username = serializers.CharField(max_length=200, required=False)
    secret = serializers.CharField(max_length=200, required=False, write_only=True)
    identifier = serializers.ChoiceField(
        choices=AutotaskConnection.Identifier.choices, required=False
    )
    filters = FiltersField(required=False)

    def validate(self, attrs):
        if "username" in attrs and "secret" not in attrs:
            raise serializers.ValidationError({"secret": "Send the secret with a new username."})
        return attrs


class PreviewInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=200, required=False, allow_blank=True)
    secret = serializers.CharField(
        max_length=200, required=False, allow_blank=True, write_only=True
    )
    filters = FiltersField(required=False, default=dict)


class PreviewSerializer(serializers.Serializer):
    customers = serializers.IntegerField()
    invoices = serializers.IntegerField()
    requests_used = serializers.IntegerField()
    company_types = serializers.DictField(child=serializers.CharField())


def _validation_to_domain(exc: ValidationError) -> DomainError:
    return DomainError(
        "Some filters are not valid.",
        code="invalid_filters",
        extra={"errors": {"filters": exc.message_dict}},
    )


ERRORS = {
    # Field → messages for invalid input, `detail` and `code` for refused credentials.
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid input or refused credentials"),
    409: OpenApiResponse(ErrorSerializer, description="Conflicts with the current state"),
    429: OpenApiResponse(ErrorSerializer, description="Autotask is rate limiting"),
    503: OpenApiResponse(ErrorSerializer, description="Autotask unreachable"),
}


# JSON bodies only: `filters` is an object, which a form body cannot carry (DRF's form parsers
# dropped it silently); anything else is a 415.
JSON_ONLY = [JSONParser]


class AutotaskConnectionView(APIView):
    """The partner's Autotask connection. Reading needs a partner user; changing it needs an
    owner or admin."""

    parser_classes = JSON_ONLY

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsPartnerUser()]
        return [IsPartnerManager()]

    def _connection(self):
        return connection_for(partner=self.request.partner)

    @extend_schema(responses={200: ConnectionSerializer, 404: ErrorSerializer})
    def get(self, request):
        conn = self._connection()
        if conn is None:
            return Response(
                {"detail": "Autotask has never been connected.", "code": "not_connected"},
                status=404,
            )
        return Response(ConnectionSerializer(conn).data)

    @extend_schema(request=ConnectInputSerializer, responses={201: ConnectionSerializer, **ERRORS})
    def post(self, request):
        data = ConnectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            conn = connect.autotask_connect(
                partner=request.partner, actor=request.user, **data.validated_data
            )
        except ValidationError as exc:
            raise _validation_to_domain(exc) from exc
        body = ConnectionSerializer(conn).data
        if conn.first_run:
            body["sync_run_id"] = conn.first_run.id
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=UpdateInputSerializer, responses={200: ConnectionSerializer, **ERRORS})
    def patch(self, request):
        conn = self._connection()
        if conn is None or not conn.is_active:
            raise services.ConnectError("not_connected", status_code=404)
        data = UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            conn = connect.autotask_update(
                connection=conn, actor=request.user, **data.validated_data
            )
        except ValidationError as exc:
            raise _validation_to_domain(exc) from exc
        body = ConnectionSerializer(conn).data
        if conn.catch_up_run:  # new credentials fixed the connection
            body["sync_run_id"] = conn.catch_up_run.id
        return Response(body)

    @extend_schema(request=None, responses={200: ConnectionSerializer, 404: ErrorSerializer})
    def delete(self, request):
        conn = self._connection()
        if conn is None or not conn.is_active:
            raise services.ConnectError("not_connected", status_code=404)
        conn = connect.autotask_disconnect(connection=conn, actor=request.user)
        return Response(ConnectionSerializer(conn).data)


class CredentialsInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=200, required=False, allow_blank=True)
    secret = serializers.CharField(
        max_length=200, required=False, allow_blank=True, write_only=True
    )


class PickSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class OptionsSerializer(serializers.Serializer):
    company_types = PickSerializer(many=True)
    companies = PickSerializer(many=True)
    companies_complete = serializers.BooleanField(
        help_text="False: the database has more companies than listed; enter ids instead."
    )
    payment_terms = PickSerializer(many=True)


def _credentials(request, data) -> tuple[str, str]:
    """The credentials typed in the form, else the stored connection's."""
    username, secret = data.get("username"), data.get("secret")
    if not username or not secret:
        conn = connection_for(partner=request.partner)
        if conn is None or not conn.is_active:
            raise DomainError(
                "Enter the Username (Key) and Password (Secret) first.",
                code="credentials_required",
            )
        username = username or conn.username.reveal()
        secret = secret or conn.secret.reveal()
    return username, secret


def _picks(pairs) -> list[dict]:
    return [{"id": key, "name": name} for key, name in pairs]


class AutotaskOptionsView(APIView):
    """What the Connect form offers to pick (company types, companies, payment terms), read
    from the partner's own Autotask. With no username/secret, the stored connection's are used.
    POST: the credentials travel in the body, never in a URL."""

    permission_classes = [IsPartnerManager]
    parser_classes = JSON_ONLY

    @extend_schema(request=CredentialsInputSerializer, responses={200: OptionsSerializer, **ERRORS})
    def post(self, request):
        data = CredentialsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, secret = _credentials(request, data.validated_data)
        options = services.autotask_options(username=username, secret=secret)
        body = {
            "company_types": _picks(sorted(options.company_types.items())),
            "companies": _picks(options.companies),
            "companies_complete": options.companies_complete,
            "payment_terms": _picks(options.payment_terms),
        }
        return Response(OptionsSerializer(body).data)


class AutotaskPreviewView(APIView):
    """How many customers and invoices the filters would bring in, before saving (about 5
    Autotask requests). With no username/secret, the stored connection's are used."""

    permission_classes = [IsPartnerManager]
    parser_classes = JSON_ONLY

    @extend_schema(request=PreviewInputSerializer, responses={200: PreviewSerializer, **ERRORS})
    def post(self, request):
        data = PreviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, secret = _credentials(request, data.validated_data)
        try:
            preview = services.autotask_preview(
                username=username, secret=secret, filters=data.validated_data["filters"]
            )
        except ValidationError as exc:
            raise _validation_to_domain(exc) from exc
        return Response(PreviewSerializer(preview).data)
