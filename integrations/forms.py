from django import forms
from django.core.exceptions import ValidationError

from .filters import DEFAULT_COMPANY_TYPES, FILTER_KEYS, validate_filters
from .models import AutotaskConnection

FILTER_FIELDS = FILTER_KEYS


class CompanyTypesField(forms.TypedMultipleChoiceField):
    """Checkboxes of Autotask's standard company types; a database may have its own (the
    Connect page loads them from the partner's Autotask), so any Autotask id is accepted here
    and checked against the live picklist when the connection is verified."""

    def valid_value(self, value):
        return str(value).strip().isdigit()


class AutotaskConnectForm(forms.Form):
    """R1: email of the Autotask account, Username (Key), Password (Secret), identifier, and
    optional filters. The secret is never rendered back (render_value=False)."""

    account_email = forms.EmailField(label="Email of your Autotask account")
    username = forms.CharField(label="Username (Key)", max_length=200, strip=True)
    secret = forms.CharField(
        label="Password (Secret)",
        max_length=200,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    identifier = forms.ChoiceField(
        label="Invoice identifier",
        choices=AutotaskConnection.Identifier.choices,
        initial=AutotaskConnection.Identifier.INVOICE_NUMBER,
        widget=forms.RadioSelect,
    )
    company_types = CompanyTypesField(
        label="Company types",
        required=False,
        coerce=int,
        choices=sorted(DEFAULT_COMPANY_TYPES.items()),
        widget=forms.CheckboxSelectMultiple,
    )
    include_company_ids = forms.CharField(
        label="Only these companies",
        required=False,
        help_text="Pick them once Autotask's lists are loaded, or enter Autotask ids, "
        "comma-separated.",
    )
    exclude_company_ids = forms.CharField(
        label="Except these companies",
        required=False,
        help_text="Pick them, or enter Autotask ids, comma-separated.",
    )
    active_only = forms.BooleanField(label="Active companies only", required=False)
    invoices_from = forms.CharField(
        label="Invoices dated on or after",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    min_total = forms.CharField(label="Minimum invoice total", required=False)
    payment_terms = forms.CharField(
        label="Only these payment terms",
        required=False,
        help_text="Pick them, or enter Autotask ids, comma-separated.",
    )
    include_voided = forms.BooleanField(label="Include voided invoices", required=False)

    def __init__(self, *args, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = editing
        if editing:
            # Credentials are write-only: leave them blank to keep the stored ones.
            self.fields["username"].required = False
            self.fields["secret"].required = False
            self.fields["username"].help_text = "Leave blank to keep the current username."
            self.fields["secret"].help_text = "Leave blank to keep the current secret."

    def clean(self):
        data = super().clean()
        raw = {key: data.get(key) for key in FILTER_FIELDS}
        try:
            data["filters"] = validate_filters(raw)
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(key if key in self.fields else None, messages)
        if self.editing and data.get("username") and not data.get("secret"):
            self.add_error("secret", "Enter the secret that goes with the new username.")
        return data

    @classmethod
    def initial_from(cls, connection: AutotaskConnection) -> dict:
        filters = connection.filters or {}
        initial = {
            "account_email": connection.account_email,
            "identifier": connection.identifier,
        }
        for key in FILTER_FIELDS:
            value = filters.get(key)
            if isinstance(value, list) and key != "company_types":
                value = ", ".join(map(str, value))
            if value is not None:
                initial[key] = value
        return initial
