from django.contrib import admin

from .models import AutotaskConnection, IntegrationEvent


@admin.register(AutotaskConnection)
class AutotaskConnectionAdmin(admin.ModelAdmin):
    """Credentials never appear: no username/secret field in any form, only the mask."""

    list_display = [
        "partner",
        "status",
        "masked_username",
        "zone_name",
        "connected_at",
        "schedules_paused",
        "last_error_kind",
    ]
    list_filter = ["status", "schedules_paused"]
    search_fields = ["partner__name", "account_email"]
    list_select_related = ["partner"]
    exclude = ["username", "secret"]
    readonly_fields = [
        "partner",
        "masked_username",
        "status",
        "zone_name",
        "zone_url",
        "web_url",
        "database_ci",
        "connected_at",
        "disconnected_at",
        "last_error_kind",
        "last_error_message",
        "last_error_at",
        "created_at",
        "updated_at",
        "account_email",
        "identifier",
        "filters",
        "username_last4",
    ]

    def has_add_permission(self, request):
        return False  # partners connect from the dashboard, where credentials are verified


@admin.register(IntegrationEvent)
class IntegrationEventAdmin(admin.ModelAdmin):
    list_display = ["partner", "kind", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["partner__name"]
    readonly_fields = ["partner", "kind", "actor", "details", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
