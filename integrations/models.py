from django.db import models
from django.utils import timezone

from config.encryption import EncryptedTextField
from partners.models import Partner, PartnerOwnedQuerySet

from .guidance import plain_failure


class AutotaskConnection(models.Model):
    """A partner's link to its Autotask database (one per partner, R1).

    Username and secret are stored encrypted (config/encryption.py); only the last 4 characters
    of the username are kept in clear, for display. Disconnecting erases both but keeps the row
    (with the database's `ci`), so reconnecting the same database continues where it stopped
    and connecting a different one can be refused until the partner disconnects.
    """

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        NEEDS_ATTENTION = "needs_attention", "Needs attention"
        DISCONNECTED = "disconnected", "Disconnected"

    class Identifier(models.TextChoices):
        INVOICE_NUMBER = "invoice_number", "Invoice Number"
        AUTOTASK_ID = "autotask_id", "Autotask ID"

    partner = models.OneToOneField(
        Partner, on_delete=models.CASCADE, related_name="autotask_connection"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONNECTED)
    account_email = models.EmailField(help_text="Email of the partner's Autotask account.")
    username = EncryptedTextField(null=True, blank=True)
    secret = EncryptedTextField(null=True, blank=True)
    username_last4 = models.CharField(max_length=4, blank=True)
    identifier = models.CharField(
        max_length=20, choices=Identifier.choices, default=Identifier.INVOICE_NUMBER
    )
    filters = models.JSONField(default=dict, blank=True)

    zone_name = models.CharField(max_length=100, blank=True)
    zone_url = models.URLField(max_length=300, blank=True)
    web_url = models.URLField(max_length=300, blank=True)
    database_ci = models.BigIntegerField(
        null=True, blank=True, help_text="Autotask's database identifier (zoneInformation ci)."
    )
    # The database's Autotask Currencies, cached (issue 16: invoice amounts are in the
    # company's currency). Read at connect and when a company names a currencyID not in it
    # (integrations/services.py `currencies_refresh`), never on an hourly run with nothing new.
    currencies = models.JSONField(
        default=dict,
        blank=True,
        help_text="Autotask Currencies of the database: {currency id: ISO code}.",
    )
    internal_currency = models.CharField(
        max_length=3,
        blank=True,
        help_text="The database's internal currency (companies without currencyID use it); "
        "empty: not read yet.",
    )
    currencies_read_at = models.DateTimeField(null=True, blank=True)

    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    schedules_paused = models.BooleanField(default=False)
    last_error_kind = models.CharField(max_length=40, blank=True)
    last_error_message = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # When the connection started needing attention (the first failure, not the last one nor
    # the connect time), and when it was last fixed (new credentials or a test that passed):
    # a manual sync that failed before the fix no longer holds its cooldown (sync/selectors.py).
    attention_since = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PartnerOwnedQuerySet.as_manager()

    def __str__(self):
        return f"Autotask for {self.partner} ({self.get_status_display()})"

    @property
    def masked_username(self) -> str:
        return f"••••{self.username_last4}" if self.username_last4 else ""

    @property
    def is_active(self) -> bool:
        return self.status != self.Status.DISCONNECTED

    @property
    def last_error_plain(self) -> str:
        """The last error for the partner: plain words and the one thing to do (the raw
        message stays in last_error_message, for ops)."""
        return plain_failure(self.last_error_kind) if self.last_error_kind else ""

    def record_error(self, kind: str, message: str, *, needs_attention: bool) -> None:
        self.last_error_kind, self.last_error_message = kind, message[:2000]
        self.last_error_at = timezone.now()
        fields = ["last_error_kind", "last_error_message", "last_error_at", "updated_at"]
        if needs_attention and self.status == self.Status.CONNECTED:
            self.status = self.Status.NEEDS_ATTENTION
            self.attention_since = self.last_error_at
            fields += ["status", "attention_since"]
        self.save(update_fields=fields)

    def mark_restored(self) -> None:
        """The partner fixed the connection (in memory; the caller saves): errors cleared, the
        time kept so cooldowns held by runs that failed before it are given back."""
        self.status = self.Status.CONNECTED
        self.last_error_kind = self.last_error_message = ""
        self.last_error_at = self.attention_since = None
        self.restored_at = timezone.now()


class IntegrationEvent(models.Model):
    """What happened to a partner's connection, by whom: connected, updated, disconnected."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", "Connected"
        UPDATED = "updated", "Updated"
        DISCONNECTED = "disconnected", "Disconnected"
        NEEDS_ATTENTION = "needs_attention", "Needs attention"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        "partners.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PartnerOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.created_at:%Y-%m-%d %H:%M})"
