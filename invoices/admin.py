from django.contrib import admin

from .models import Invoice


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Read-only where it mirrors Autotask; money fields are never edited here."""

    list_display = [
        "number",
        "partner",
        "customer",
        "invoice_date",
        "total",
        "outstanding",
        "status",
        "archived_at",
        "missing_in_autotask_since",
    ]
    list_filter = ["status", "source", "voided"]
    search_fields = [
        "number",
        "autotask_invoice_number",
        "=autotask_id",
        "partner__name",
        "customer__name",
    ]
    list_select_related = ["partner", "customer"]
    date_hierarchy = "invoice_date"
    readonly_fields = [f.name for f in Invoice._meta.fields if f.name != "archived_at"]

    def has_add_permission(self, request):
        return False
