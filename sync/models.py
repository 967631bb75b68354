from django.conf import settings
from django.db import models

from partners.models import Partner, PartnerOwnedModel, PartnerOwnedQuerySet


class SyncRun(PartnerOwnedModel):
    """One sync of one partner: what was asked, what happened, and what it cost. The dashboard,
    the API and ops all read these rows; a run with no row never happens."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial sync"
        NEW_DATA = "new_data", "New data"
        UNPAID = "unpaid", "Unpaid invoices"
        PDF = "pdf", "Invoice PDFs"

    class Trigger(models.TextChoices):
        CONNECT = "connect", "Connect"
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        OPS = "ops", "Ops"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        PARTIAL = "partial", "Partially succeeded"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=10, choices=Kind.choices)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # For scheduled runs: the period this run belongs to, so two beats (or a redelivered
    # dispatcher) cannot create two runs for one slot.
    slot = models.CharField(max_length=40, blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    owner = models.UUIDField(null=True, blank=True, help_text="Fencing token of the worker.")
    attempts = models.PositiveSmallIntegerField(default=0)
    phase = models.CharField(max_length=30, blank=True)
    cursor = models.JSONField(default=dict, blank=True, help_text="Where to resume.")
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped_reasons = models.JSONField(default=dict, blank=True)
    requests_used = models.PositiveIntegerField(default=0)
    error_kind = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "kind", "slot"],
                condition=~models.Q(slot=""),
                name="syncrun_one_per_slot",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class ChangeLogEntry(PartnerOwnedModel):
    """One changed field of one record, by one run (or by a person)."""

    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.CASCADE, related_name="changes"
    )
    record_type = models.CharField(max_length=20)  # "invoice" / "customer"
    record_id = models.BigIntegerField()
    autotask_id = models.BigIntegerField(null=True, blank=True)
    field = models.CharField(max_length=50)
    # NULL (no value) differs from "" (an empty value) in a change log.
    old_value = models.TextField(blank=True, null=True)  # noqa: DJ001
    new_value = models.TextField(blank=True, null=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "change log entries"
        indexes = [
            models.Index(fields=["partner", "record_type", "record_id"]),
            models.Index(fields=["run"]),
        ]


class SyncState(models.Model):
    """Per-partner sync state: the lease that keeps one sync per partner at a time, the cursors
    of incremental syncs, and the manual-sync cooldowns. All claims on it are conditional
    UPDATEs (never check-then-act, never a cache flag)."""

    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, related_name="sync_state")
    lease_run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_owner = models.UUIDField(null=True, blank=True)
    lease_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # New-data cursor: invoices created at or after this (minus the overlap) are re-read.
    invoices_created_cursor = models.DateTimeField(null=True, blank=True)
    companies_changed_cursor = models.DateTimeField(null=True, blank=True)
    last_success = models.JSONField(default=dict, blank=True, help_text="kind → ISO time")
    next_fetch_new_data_at = models.DateTimeField(null=True, blank=True)
    next_fetch_unpaid_at = models.DateTimeField(null=True, blank=True)

    objects = PartnerOwnedQuerySet.as_manager()

    def __str__(self):
        return f"Sync state of {self.partner}"
