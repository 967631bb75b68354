"""The sign-in forms of the dashboard and the admin: Django's, plus the lockout message when
django-axes refused the attempt (partners/login_security.py). Wrong password and unknown user
keep Django's one message."""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from .login_security import is_locked_out, lockout_message


class _LockoutAwareMixin:
    locked_out = False

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            if self.request is not None and is_locked_out(self.request):
                self.locked_out = True
                raise forms.ValidationError(lockout_message(), code="locked_out") from None
            raise


class LoginForm(_LockoutAwareMixin, AuthenticationForm):
    pass


class AdminLoginForm(_LockoutAwareMixin, AdminAuthenticationForm):
    pass
