from django.contrib import admin

from ops.mixins import NoBulkDeleteMixin, PartnerColumnMixin

from .models import Invoice


@admin.register(Invoice)
class InvoiceAdmin(NoBulkDeleteMixin, PartnerColumnMixin, admin.ModelAdmin):
    """Read-only where it mirrors Autotask, and money fields are never edited here (not even
    by superusers): balances change only through syncs and the payment services. Only the
    archive flag can be changed, by users with the change permission (not support)."""

    list_display = [
        "number",
        "partner_name",
        "customer",
        "autotask_id",
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
