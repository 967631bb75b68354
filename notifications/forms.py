from django import forms

from .models import Kind


class NotificationPreferencesForm(forms.Form):
    """Preferences → Notifications: one box per kind, ticked = email me."""

    connection = forms.BooleanField(required=False, label=Kind.CONNECTION.label)
    writeback = forms.BooleanField(required=False, label=Kind.WRITEBACK.label)
    stale_sync = forms.BooleanField(required=False, label=Kind.STALE_SYNC.label)

    def wanted(self) -> set[str]:
        return {kind for kind in Kind.values if self.cleaned_data.get(kind)}
