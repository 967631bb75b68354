import zoneinfo

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.utils.text import slugify


class Partner(models.Model):
    """The tenant: an MSP using the platform. Every partner-owned row points here."""

    class Integration(models.TextChoices):
        NONE = "none", "None"
        AUTOTASK = "autotask", "Autotask"
        OTHER = "other", "Other PSA"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    primary_integration = models.CharField(
        max_length=20, choices=Integration.choices, default=Integration.NONE
    )
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="Used to show times in the dashboard."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        # Held by the "support" group (partners/migrations/0002): ops actions in the admin.
        permissions = [("run_ops_actions", "Can run ops actions")]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)[:80] or "partner"
        super().save(*args, **kwargs)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The partner's time zone; UTC when the stored name is unknown."""
        try:
            return zoneinfo.ZoneInfo(self.time_zone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")


class PartnerOwnedQuerySet(models.QuerySet):
    def for_partner(self, partner):
        if partner is None:
            raise ValueError("A partner-owned query needs a partner.")
        return self.filter(partner=partner)


class PartnerUserManager(UserManager.from_queryset(PartnerOwnedQuerySet)):
    pass


class User(AbstractUser):
    """A person who signs in. Partner users belong to exactly one partner; ops staff have no
    partner and use the admin."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    objects = PartnerUserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(partner__isnull=False) | models.Q(is_staff=True),
                name="user_has_partner_unless_staff",
            )
        ]

    @property
    def can_manage_partner(self) -> bool:
        return self.partner_id is not None and self.role in (self.Role.OWNER, self.Role.ADMIN)


class PartnerOwnedModel(models.Model):
    """Base for every row that belongs to a partner. Views reach these rows only through
    `Model.objects.for_partner(request.partner)` (see partners/tenancy.py)."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")

    objects = PartnerOwnedQuerySet.as_manager()

    class Meta:
        abstract = True


class IdempotencyKey(PartnerOwnedModel):
    """An `Idempotency-Key` of a partner's POST (RELIABILITY §4): the first request's outcome,
    replayed for the same key and body. Kept at least 24 hours."""

    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    in_progress = models.BooleanField(default=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Moved from payments without touching the table (partners/migrations/0003).
        db_table = "payments_idempotencykey"
        constraints = [
            models.UniqueConstraint(fields=["partner", "key"], name="idempotency_key_per_partner")
        ]
        indexes = [models.Index(fields=["created_at"], name="payments_id_created_34bf37_idx")]

    def __str__(self):
        return f"Idempotency-Key {self.key[:20]}"


class ApiToken(PartnerOwnedModel):
    """An API token of one user (partners/tokens.py). Only the SHA-256 of the token is stored:
    the value is shown once, when it is created. A token stops working when it expires or is
    revoked (by its owner, or because its user changed password or was deactivated)."""

    class RevokedReason(models.TextChoices):
        OWNER = "owner", "Revoked by its owner"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        DEACTIVATED = "deactivated", "User deactivated"
        OPS = "ops", "Revoked by ops"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the token, to tell tokens apart; never enough to use one.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(
        max_length=20, choices=RevokedReason.choices, blank=True, default=""
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="apitoken_user_revoked_idx")]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"
