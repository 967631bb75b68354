from django.contrib.auth import authenticate, get_user_model
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import DomainError, StrictCharField

from .login_security import is_locked_out, lockout_json_response
from .models import ApiToken, Partner
from .tenancy import PartnerViewSetMixin
from .tokens import api_token_create, api_token_revoke, token_ttl_days

User = get_user_model()


class PartnerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Partner
        fields = ["id", "name", "slug", "primary_integration", "time_zone", "created_at"]
        read_only_fields = fields


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "role", "date_joined"]
        read_only_fields = fields


class MeSerializer(serializers.Serializer):
    user = UserSerializer()
    partner = PartnerSerializer()


class MeView(APIView):
    """The signed-in user and their partner."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        return Response(MeSerializer({"user": request.user, "partner": request.partner}).data)


class UserViewSet(PartnerViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The partner's team: users who can sign in to this partner's dashboard."""

    partner_model = User
    queryset = User.objects.none()
    serializer_class = UserSerializer

    def filter_partner_queryset(self, queryset):
        return queryset.filter(is_active=True).order_by("id")


# --- API tokens (partners/tokens.py) ---------------------------------------------------------


class ApiTokenSerializer(serializers.ModelSerializer):
    expired = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at", "expired"]
        read_only_fields = fields

    def get_expired(self, obj) -> bool:
        return obj.expires_at <= timezone.now()


class ApiTokenCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, help_text="At most API_TOKEN_TTL_DAYS (90 by default)."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The schema's `maximum` (drf-spectacular reads max_value); the check is below.
        self.fields["expires_in_days"].max_value = token_ttl_days()

    def validate_expires_in_days(self, value):
        if value > token_ttl_days():
            raise serializers.ValidationError(f"At most {token_ttl_days()} days.")
        return value


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(help_text="The token itself: shown this once, never again.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


def _created_body(token, raw):
    token.token = raw
    return ApiTokenCreatedSerializer(token).data


class ApiTokenViewSet(
    PartnerViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens: list (never the token itself), create (the token is in the answer,
    once) and revoke. Only your own, not your teammates'."""

    partner_model = ApiToken
    queryset = ApiToken.objects.none()
    serializer_class = ApiTokenSerializer

    def filter_partner_queryset(self, queryset):
        return queryset.filter(user=self.request.user, revoked_at__isnull=True)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: ApiTokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = ApiTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, raw = api_token_create(user=request.user, **serializer.validated_data)
        response = Response(_created_body(token, raw), status=201)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        api_token_revoke(self.get_object())
        return Response(status=204)


class ObtainTokenSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})


class LockedOutSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="`login_locked_out`")
    detail = serializers.CharField()


class ObtainTokenView(APIView):
    """Username and password → a new API token named "API login <date>" (kept from the first
    API version; the tokens page and `POST /api/v1/auth/tokens/` are the better way). Locked
    after 20 failed attempts, like every sign-in: 429 with code `login_locked_out`."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=ObtainTokenSerializer,
        responses={
            200: ApiTokenCreatedSerializer,
            429: OpenApiResponse(
                LockedOutSerializer, description="Too many failed sign-ins: try again later."
            ),
        },
        auth=[],
    )
    def post(self, request):
        serializer = ObtainTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # The Django request, not DRF's: django-axes marks a lockout on the object it is given.
        django_request = request._request
        user = authenticate(django_request, **serializer.validated_data)
        if user is None:
            if is_locked_out(django_request):
                return lockout_json_response()
            raise DomainError(
                "Unable to sign in with these credentials.",
                code="invalid_credentials",
                status_code=400,
            )
        if user.partner_id is None:
            raise DomainError(
                "This API is for partner users; your account belongs to no partner.",
                code="no_partner",
                status_code=403,
            )
        name = f"API login {timezone.localdate():%Y-%m-%d}"
        token, raw = api_token_create(user=user, name=name)
        response = Response(_created_body(token, raw))
        response["Cache-Control"] = "no-store"
        return response
