"""Dashboard form for invoices created here (R7: never sent to Autotask); the New customer
form is in customers/forms.py.

The form only checks input; the row is written by `invoice_create_local`, the same service the
API calls."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils import timezone

from customers.models import Customer

MONEY = {"max_digits": 14, "decimal_places": 2}
DATE_WIDGET = {"widget": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}


class InvoiceCreateForm(forms.Form):
    """The fields `invoice_create_local` accepts. The customer list is the partner's own
    customers that are not archived: any other id (another partner's, an archived one) is not
    a choice, so it is a field error and never reaches the service."""

    customer = forms.ModelChoiceField(
        label="Customer",
        queryset=Customer.objects.none(),
        empty_label="Choose a customer",
        error_messages={
            "invalid_choice": "Choose one of your customers (archived customers cannot be "
            "invoiced)."
        },
    )
    number = forms.CharField(label="Invoice number", max_length=100)
    invoice_date = forms.DateField(label="Invoice date", initial=timezone.localdate, **DATE_WIDGET)
    due_date = forms.DateField(
        label="Due date",
        required=False,
        help_text="Leave blank for due on the invoice date.",
        **DATE_WIDGET,
    )
    total = forms.DecimalField(
        label="Total (incl. tax)",
        min_value=Decimal("0.01"),
        error_messages={"min_value": "Enter an amount greater than 0."},
        **MONEY,
    )
    tax = forms.DecimalField(
        label="Of which tax",
        required=False,
        min_value=Decimal("0"),
        initial=Decimal("0.00"),
        error_messages={"min_value": "Tax cannot be negative."},
        **MONEY,
    )
    currency = forms.CharField(
        label="Currency",
        min_length=3,
        max_length=3,
        required=False,
        help_text="Leave blank for the customer's currency.",
    )

    def __init__(self, *args, partner, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["customer"].queryset = (
            Customer.objects.for_partner(partner).filter(archived_at__isnull=True).order_by("name")
        )

    def clean_currency(self):
        value = (self.cleaned_data["currency"] or "").strip().upper()
        if value and (not value.isascii() or not value.isalpha()):
            raise forms.ValidationError("Enter a three-letter currency code, like EUR.")
        return value

    def clean_tax(self):
        return self.cleaned_data["tax"] if self.cleaned_data["tax"] is not None else Decimal("0")

    def clean(self):
        data = super().clean()
        invoice_date, due_date = data.get("invoice_date"), data.get("due_date")
        if invoice_date and due_date and due_date < invoice_date:
            self.add_error("due_date", "The due date cannot be before the invoice date.")
        total, tax = data.get("total"), data.get("tax")
        if total is not None and tax is not None and tax > total:
            self.add_error("tax", "Tax cannot be more than the total, which includes it.")
        # The customer's currency is the invoice's (invoices/services.py invoice_currency_for,
        # which also decides when the customer has none).
        customer, currency = data.get("customer"), data.get("currency")
        if customer is not None and customer.currency and currency not in ("", customer.currency):
            self.add_error(
                "currency",
                f"{customer.name} is billed in {customer.currency}: leave this blank or "
                f"enter {customer.currency}.",
            )
        return data
