from django.contrib import admin
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
