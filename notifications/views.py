from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.views import View

from partners.models import User
from partners.tenancy import PartnerRequiredMixin

from . import services
from .forms import NotificationPreferencesForm


class NotificationPreferencesView(PartnerRequiredMixin, View):
    """POST the Notifications boxes of Preferences: which emails this owner gets. Emails go to
    owners only, so only owners have boxes to tick."""

    def post(self, request):
        if request.user.role != User.Role.OWNER:
            raise PermissionDenied("Notification emails go to the partner's owners only.")
        form = NotificationPreferencesForm(request.POST)
        form.is_valid()  # booleans: every POST is valid, a missing box is "no"
        services.notification_preferences_set(
            partner=self.partner, user=request.user, wanted=form.wanted()
        )
        messages.success(request, "Your notification emails are saved.")
        return HttpResponseRedirect(reverse("dashboard:preferences") + "#notifications")
