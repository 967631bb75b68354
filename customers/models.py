from django.db import models

from partners.models import PartnerOwnedModel


class Source(models.TextChoices):
    AUTOTASK = "autotask", "Autotask"
    LOCAL = "local", "Created here"


class Customer(PartnerOwnedModel):
    """A partner's customer: mirrored from an Autotask company, or created here (never sent to
    Autotask, R7). Archived customers are never revived or overwritten by a sync (R9)."""

    source = models.CharField(max_length=10, choices=Source.choices, default=Source.AUTOTASK)
    autotask_id = models.BigIntegerField(null=True, blank=True)
    name = models.CharField(max_length=255)
    number = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=50, blank=True)
    address1 = models.CharField(max_length=255, blank=True)
    address2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=30, blank=True)
    country_id = models.IntegerField(null=True, blank=True)
    company_type = models.IntegerField(null=True, blank=True)
    active = models.BooleanField(default=True)
    # ISO 4217 code. From the Autotask company's currencyID (its database's internal currency
    # when null); empty = unknown (not read since this field exists, or Autotask's currency id
    # could not be resolved): never assumed to be USD.
    currency = models.CharField(max_length=3, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    missing_in_autotask_since = models.DateTimeField(null=True, blank=True)
    # Hash of the Autotask data last applied: an unchanged company costs no write.
    autotask_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # Not a partial index: NULLs are distinct in PostgreSQL, so rows created here
            # (no Autotask id) never collide, and ON CONFLICT (partner_id, autotask_id) can
            # infer this index for the sync's upserts.
            models.UniqueConstraint(
                fields=["partner", "autotask_id"],
                name="customer_unique_autotask_id_per_partner",
            ),
            models.CheckConstraint(
                condition=~models.Q(source="autotask") | models.Q(autotask_id__isnull=False),
                name="customer_autotask_source_has_id",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "name"]),
            # The customers a list counts, totals and sorts by outstanding (not archived): read
            # from the index alone (bench/list_scale.py, 10,000 customers: the count 4 → 1 ms).
            models.Index(
                fields=["partner", "id"],
                condition=models.Q(archived_at__isnull=True),
                name="customer_partner_listed",
            ),
        ]

    def __str__(self):
        return self.name
