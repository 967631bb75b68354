from rest_framework import serializers

from customers.models import Customer
from payments.timeline import KINDS as TIMELINE_KINDS

from .models import MONEY, Invoice, InvoiceStatus


class CustomerRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["id", "name", "autotask_id"]
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer):
    customer = CustomerRefSerializer(read_only=True)
    pdf_url = serializers.HyperlinkedIdentityField(view_name="api:invoice-pdf")
    # Generated columns: declared so they serialise like the other amounts ("12.30", a string)
    # and are typed in the schema, whatever the database driver returns.
    outstanding = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    status = serializers.ChoiceField(choices=InvoiceStatus.choices, read_only=True)
    overdue = serializers.BooleanField(
        source="is_overdue", read_only=True, help_text="Open or partially paid, past its due date."
    )
    status_label = serializers.CharField(
        read_only=True, help_text="The status in words: Open, Partially paid, Paid, Void, Overdue."
    )

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "source",
            "autotask_id",
            "autotask_invoice_number",
            "customer",
            "invoice_date",
            "due_date",
            "currency",
            "total",
            "tax",
            "paid_here",
            "outstanding",
            "status",
            "status_label",
            "overdue",
            "paid_in_autotask_on",
            "voided",
            "archived_at",
            "missing_in_autotask_since",
            "pdf_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TimelineEntrySerializer(serializers.Serializer):
    """One entry of an invoice's timeline (payments/timeline.py), oldest first."""

    at = serializers.DateTimeField()
    # A plain string in the schema (an enum named "kind" would collide with the sync run's).
    kind = serializers.CharField(help_text="One of: " + ", ".join(TIMELINE_KINDS) + ".")
    title = serializers.CharField(help_text="What happened, in plain words.")
    detail = serializers.CharField(allow_blank=True)
    run_id = serializers.IntegerField(allow_null=True, help_text="The sync run, if any.")
    payment_id = serializers.IntegerField(allow_null=True, help_text="The payment, if any.")
    link = serializers.CharField(
        allow_null=True, help_text="A dashboard page about the entry (the sync run), if any."
    )


class MovePaymentsSerializer(serializers.Serializer):
    to_invoice = serializers.IntegerField(
        min_value=1,
        max_value=2**63 - 1,  # a PostgreSQL bigint, as every id
        help_text="The id of the invoice Autotask issued in place of the voided one.",
    )


class PaymentMoveSerializer(serializers.Serializer):
    """One payment moved (an audit row: payments.models.PaymentMove)."""

    payment = serializers.IntegerField(source="payment_id")
    from_invoice = serializers.IntegerField(source="from_invoice_id")
    to_invoice = serializers.IntegerField(source="to_invoice_id")
    amount = serializers.DecimalField(**MONEY)
