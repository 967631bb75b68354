from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Partner
from .tenancy import PartnerViewSetMixin

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
