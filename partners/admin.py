from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import Partner, User


class UserInline(admin.TabularInline):
    model = User
    fields = ["username", "email", "role", "is_active", "last_login"]
    readonly_fields = ["last_login"]
    extra = 0
    show_change_link = True


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "primary_integration", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["primary_integration"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [UserInline]
    actions = ["run_fetch_new_data_now", "run_fetch_unpaid_invoices_now"]

    @admin.action(description="Run Fetch New Data now", permissions=["change"])
    def run_fetch_new_data_now(self, request, queryset):
        self._run_sync_now(request, queryset, "new_data")

    @admin.action(description="Run Fetch Unpaid Invoices now", permissions=["change"])
    def run_fetch_unpaid_invoices_now(self, request, queryset):
        self._run_sync_now(request, queryset, "unpaid")

    def _run_sync_now(self, request, queryset, kind):
        """Ops runs (trigger "ops"): no cooldown checked or changed (sync/manual.py)."""
        from config.api import DomainError
        from sync.manual import action_for, sync_run_ops

        title = action_for(kind).title
        for partner in queryset:
            try:
                run = sync_run_ops(partner=partner, kind=kind, user=request.user)
            except DomainError as exc:
                self.message_user(request, f"{partner}: {exc.message}", messages.ERROR)
                continue
            self.log_change(request, partner, f"{title}: started ops sync run #{run.pk}.")
            self.message_user(request, f"{partner}: {title} started (run #{run.pk}).")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "partner", "role", "is_staff", "is_active"]
    list_filter = ["is_staff", "is_active", "role", "partner"]
    list_select_related = ["partner"]
    fieldsets = [
        *BaseUserAdmin.fieldsets,
        ("Partner", {"fields": ["partner", "role"]}),
    ]
    add_fieldsets = [
        *BaseUserAdmin.add_fieldsets,
        ("Partner", {"fields": ["partner", "role", "email"]}),
    ]
