from rest_framework import serializers

from customers.models import Customer

from .models import Invoice, InvoiceStatus


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
            "credits",
            "paid_here",
            "outstanding",
            "status",
            "paid_in_autotask_on",
            "voided",
            "archived_at",
            "missing_in_autotask_since",
            "pdf_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
