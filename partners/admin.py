"""Ops' side of sign-ins and API tokens (issue 18), in the admin next to the users:

- "Access attempts" (axes section): django-axes' failed-attempt records (our registration;
  axes' own admin is off, AXES_ENABLE_ADMIN). "Unlock" deletes the selected records, which is
  how axes forgets failures; support may run it (`partners.run_ops_actions`), like the other
  ops actions.
- "API tokens": read-only, never the digest; "Revoke" for incident response.
- The admin login uses the lockout-aware form (partners/forms.py).
"""

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry

from .forms import AdminLoginForm
from .models import ApiToken
from .tokens import api_token_revoke

OPS_PERMISSION = "partners.run_ops_actions"

admin.site.login_form = AdminLoginForm


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_ops_permission(self, request):
        return request.user.has_perm(OPS_PERMISSION)


@admin.register(AccessAttempt)
class AccessAttemptAdmin(ReadOnlyAdmin):
    list_display = ["username", "ip_address", "failures_since_start", "locked", "attempt_time"]
    list_filter = ["attempt_time"]
    search_fields = ["username", "ip_address"]
    # Never get_data/post_data: axes masks the password, but they are not needed to unlock.
    fields = ["username", "ip_address", "user_agent", "path_info", "failures_since_start"]
    readonly_fields = fields
    actions = ["unlock"]
    ordering = ["-attempt_time"]

    @admin.display(boolean=True, description="Locked")
    def locked(self, obj):
        return obj.failures_since_start >= settings.AXES_FAILURE_LIMIT

    @admin.action(permissions=["ops"], description="Unlock (forget these failed sign-ins)")
    def unlock(self, request, queryset):
        count = 0
        for attempt in queryset:
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=[attempt],
                action_flag=DELETION,
                change_message=f"Unlocked {attempt.username or '(no username)'} "
                f"from {attempt.ip_address}",
                single_object=True,
            )
            attempt.delete()
            count += 1
        messages.success(request, f"Unlocked {count} sign-in record(s).")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "prefix",
        "user",
        "partner",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["revoked_reason"]
    search_fields = ["name", "prefix", "user__username"]
    fields = [
        "name",
        "prefix",
        "user",
        "partner",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_reason",
    ]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.action(permissions=["ops"], description="Revoke the selected API tokens")
    def revoke(self, request, queryset):
        count = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token, reason=ApiToken.RevokedReason.OPS)
            LogEntry.objects.log_actions(
                user_id=request.user.pk,
                queryset=[token],
                action_flag=CHANGE,
                change_message="Revoked by ops",
                single_object=True,
            )
            count += 1
        messages.success(request, f"Revoked {count} API token(s).")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
