"""Dashboard form for customers created here (R7: never sent to Autotask).

The form only checks input; the row is written by `customer_create_local`, the same service
the API calls."""

from __future__ import annotations

from django import forms


class CustomerCreateForm(forms.Form):
    """The fields `customer_create_local` accepts; lengths follow the model's columns."""

    name = forms.CharField(label="Name", max_length=255)
    number = forms.CharField(label="Customer number", max_length=100, required=False)
    email = forms.EmailField(label="Billing email", required=False)
    phone = forms.CharField(label="Phone", max_length=50, required=False)
    address1 = forms.CharField(label="Address", max_length=255, required=False)
    address2 = forms.CharField(label="Address (line 2)", max_length=255, required=False)
    city = forms.CharField(label="City", max_length=100, required=False)
    state = forms.CharField(label="State / region", max_length=100, required=False)
    postal_code = forms.CharField(label="Postal code", max_length=30, required=False)
