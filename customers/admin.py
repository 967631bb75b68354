from django.contrib import admin

from ops.mixins import NoBulkDeleteMixin, PartnerColumnMixin

from .models import Customer
from .services import SYNCED_FIELDS

# Rows that mirror Autotask are read-only here: the next sync would overwrite an edit anyway.
MIRRORED = [
    "partner",
    "source",
    "autotask_id",
    *SYNCED_FIELDS,
    "autotask_fingerprint",
    "missing_in_autotask_since",
    "created_at",
    "updated_at",
]


@admin.register(Customer)
class CustomerAdmin(NoBulkDeleteMixin, PartnerColumnMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "partner_name",
        "source",
        "autotask_id",
        "active",
        "archived_at",
        "missing_in_autotask_since",
    ]
    list_filter = ["source", "active"]
    search_fields = ["name", "number", "partner__name", "=autotask_id"]
    list_select_related = ["partner"]
    readonly_fields = MIRRORED

    def has_add_permission(self, request):
        return False  # mirrored from Autotask, or created by partners in the dashboard/API
