"""Email notifications to a partner's owners (issue 17 item 6): who opted out of which kind,
and when each partner last got a digest of each kind (notifications/services.py)."""

from django.conf import settings
from django.db import models

from partners.models import PartnerOwnedModel


class Kind(models.TextChoices):
    CONNECTION = "connection", "Autotask connection needs attention"
    WRITEBACK = "writeback", "A write-back to Autotask is parked or failed"
    STALE_SYNC = "stale_sync", "No sync succeeded for 48 hours"


class NotificationOptOut(PartnerOwnedModel):
    """One owner does not want emails of one kind. No row: the owner gets them (the default)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_opt_outs"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notification_opt_out_once")
        ]

    def __str__(self):
        return f"{self.user} opted out of {self.kind}"


class NotificationDigest(PartnerOwnedModel):
    """The last digest of one kind sent to one partner: at most one a day (in the partner's time
    zone), and a write-back digest lists only what was parked or failed since `last_sent_at`."""

    kind = models.CharField(max_length=20, choices=Kind.choices)
    last_sent_at = models.DateTimeField()
    last_items = models.PositiveIntegerField(default=0)
    last_recipients = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "kind"], name="notification_digest_once")
        ]

    def __str__(self):
        return f"{self.kind} digest of {self.partner} ({self.last_sent_at:%Y-%m-%d %H:%M})"
