from rest_framework import serializers

from .models import Customer


class CustomerSerializer(serializers.ModelSerializer):
    # Often blank (Autotask companies have no email): a plain string, not format "email".
    email = serializers.CharField(read_only=True)
    currency = serializers.CharField(
        read_only=True,
        help_text="ISO 4217 code of the customer's invoices, from its Autotask company "
        "(empty: not known yet).",
    )

    class Meta:
        model = Customer
        fields = [
            "id",
            "name",
            "number",
            "source",
            "autotask_id",
            "email",
            "phone",
            "address1",
            "address2",
            "city",
            "state",
            "postal_code",
            "currency",
            "active",
            "archived_at",
            "missing_in_autotask_since",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CustomerCreateSerializer(serializers.Serializer):
    """A customer created here (source "local"); never sent to Autotask (R7)."""

    name = serializers.CharField(max_length=255)
    number = serializers.CharField(max_length=100, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=50, required=False, allow_blank=True)
    address1 = serializers.CharField(max_length=255, required=False, allow_blank=True)
    address2 = serializers.CharField(max_length=255, required=False, allow_blank=True)
    city = serializers.CharField(max_length=100, required=False, allow_blank=True)
    state = serializers.CharField(max_length=100, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=30, required=False, allow_blank=True)
