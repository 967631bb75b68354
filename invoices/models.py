from decimal import Decimal

from django.db import connection, models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from customers.models import Customer, Source
from partners.models import Partner, PartnerOwnedModel, PartnerOwnedQuerySet

MONEY = {"max_digits": 14, "decimal_places": 2}
ZERO = Decimal("0.00")


class InvoiceStatus(models.TextChoices):
    OPEN = "open", "Open"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


def _outstanding_expression():
    # total - credits - payments here, never negative; 0 when paid in Autotask or void.
    return Case(
        When(Q(voided=True) | Q(paid_in_autotask_on__isnull=False), then=Value(ZERO)),
        default=Greatest(F("total") - F("credits") - F("paid_here"), Value(ZERO)),
        output_field=models.DecimalField(**MONEY),
    )


def _status_expression():
    due = F("total") - F("credits")
    return Case(
        When(voided=True, then=Value(InvoiceStatus.VOID)),
        When(paid_in_autotask_on__isnull=False, then=Value(InvoiceStatus.PAID)),
        When(paid_here__gte=due, then=Value(InvoiceStatus.PAID)),
        When(paid_here__gt=ZERO, then=Value(InvoiceStatus.PARTIALLY_PAID)),
        default=Value(InvoiceStatus.OPEN),
        output_field=models.CharField(max_length=20),
    )


class Invoice(PartnerOwnedModel):
    """An invoice mirrored from Autotask (or created here, R7).

    `outstanding` and `status` are generated columns computed by PostgreSQL from the stored
    amounts, so they can never drift from them: Autotask's total and credits (synced), and
    `paid_here`, the sum of succeeded payments recorded here (kept by the payments service
    under a row lock).
    """

    # No index of its own: every index of the table is led by the partner (Meta.indexes), and a
    # lone partner index cost every sync write and tempted the planner into walking a partner's
    # every row to filter them (issue 19).
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.AUTOTASK)
    autotask_id = models.BigIntegerField(null=True, blank=True)
    autotask_invoice_number = models.CharField(max_length=100, blank=True)
    number = models.CharField(
        max_length=100, help_text="The number shown and searched, per the identifier choice."
    )
    invoice_date = models.DateField()
    due_date = models.DateField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    total = models.DecimalField(**MONEY, help_text="Including tax.")
    tax = models.DecimalField(**MONEY, default=ZERO)
    # Always 0: Autotask has no per-invoice credit. A credit is a negative line on the company's
    # next invoice, already inside its invoiceTotal (API.md §10), so the invoice page and the API
    # no longer show it. Dropping the column means rebuilding the generated columns below that
    # subtract it: left for a migration of its own.
    credits = models.DecimalField(**MONEY, default=ZERO, help_text="Credits applied in Autotask.")
    paid_here = models.DecimalField(**MONEY, default=ZERO)
    paid_in_autotask_on = models.DateField(null=True, blank=True)
    voided = models.BooleanField(default=False)
    voided_at = models.DateTimeField(
        null=True, blank=True, help_text="When Autotask voided it (voidedDate), if known."
    )
    payment_term_id = models.IntegerField(null=True, blank=True)
    outstanding = models.GeneratedField(
        expression=_outstanding_expression(),
        output_field=models.DecimalField(**MONEY),
        db_persist=True,
    )
    status = models.GeneratedField(
        expression=_status_expression(),
        output_field=models.CharField(max_length=20, choices=InvoiceStatus.choices),
        db_persist=True,
    )
    autotask_created_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    missing_in_autotask_since = models.DateTimeField(null=True, blank=True)
    autotask_fingerprint = models.CharField(max_length=64, blank=True)
    pdf = models.FileField(upload_to="invoice-pdfs/%Y/%m/", blank=True)
    pdf_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Read by sync.upsert before deciding whether a sync may rewrite the row.
    SYNC_PROTECT_FIELDS = ("paid_in_autotask_on", "paid_here", "credits", "total")

    class Meta:
        ordering = ["-invoice_date", "-id"]
        constraints = [
            # Not a partial index: NULLs are distinct in PostgreSQL, so rows created here
            # (no Autotask id) never collide, and ON CONFLICT (partner_id, autotask_id) can
            # infer this index for the sync's upserts.
            models.UniqueConstraint(
                fields=["partner", "autotask_id"],
                name="invoice_unique_autotask_id_per_partner",
            ),
            models.CheckConstraint(
                condition=~Q(source="autotask") | Q(autotask_id__isnull=False),
                name="invoice_autotask_source_has_id",
            ),
            models.CheckConstraint(condition=Q(paid_here__gte=0), name="invoice_paid_here_gte_0"),
        ]
        # Every list order and filter is led by the partner (issue 19; invoices/selectors.py):
        # one index per sortable column, ending on id like the orders (config/listing.py), read
        # forwards or backwards. The date, due and status indexes carry what the count and totals
        # read (archived_at, currency, amounts; customer for the customers' totals), so those
        # are index-only scans. Search: trigrams of the upper-cased number
        # (what icontains compares) behind the partner (btree_gin), below.
        indexes = [
            models.Index(fields=["partner", "number"]),
            models.Index(
                fields=["partner", "status", "id"],
                include=["archived_at", "currency", "total", "outstanding", "customer", "due_date"],
                name="invoice_partner_status_cover",
            ),
            models.Index(fields=["partner", "customer"]),
            models.Index(
                fields=["partner", "invoice_date", "id"],
                include=["archived_at", "currency", "total", "outstanding"],
                name="invoice_partner_date",
            ),
            models.Index(
                fields=["partner", "due_date", "id"],
                include=["archived_at", "currency", "total", "outstanding"],
                name="invoice_partner_due_cover",
            ),
            models.Index(fields=["partner", "total", "id"], name="invoice_partner_total"),
            models.Index(
                fields=["partner", "outstanding", "id"], name="invoice_partner_outstanding"
            ),
            # invoice_partner_number_trgm: created by migration 0003 in SQL (Django 5.2 renders
            # OpClass over an expression inside one parenthesis too many).
        ]

    # --- display (the generated `status` column has no get_status_display) -----------------

    @property
    def is_overdue(self) -> bool:
        return (
            self.status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)
            and self.due_date is not None
            and self.due_date < timezone.localdate()
        )

    @property
    def status_label(self) -> str:
        """The status as partners read it: Open, Partially paid, Paid, Void, or Overdue."""
        if self.is_overdue:
            return "Overdue"
        try:
            return InvoiceStatus(self.status).label
        except ValueError:
            return str(self.status or "")

    @property
    def status_badge(self) -> str:
        """The badge's colour class for `status_label`."""
        if self.is_overdue:
            return "bad"
        return {
            InvoiceStatus.PAID: "good",
            InvoiceStatus.PARTIALLY_PAID: "warn",
            InvoiceStatus.VOID: "muted",
        }.get(self.status, "info")

    def __str__(self):
        return f"Invoice {self.number}"


def balances_kept() -> bool:
    """Whether PostgreSQL keeps the open balances (`OpenBalance`, its triggers): not on the
    SQLite development path, where the selectors add up the invoices instead."""
    return connection.vendor == "postgresql"


class OpenBalance(models.Model):
    """What customers owe on their open invoices, kept by PostgreSQL as rows to add up.

    The customers list sorted by outstanding needs every customer's sum before it can pick a
    page: summed from a 200,000-invoice partner's open invoices that was ~120 ms a page
    (issue 19, bench/list_scale.py). Statement triggers on `invoices_invoice` (migration 0005)
    append one row per (customer, currency) a statement changed, with the change of the
    outstanding amount and the number of its open invoices (open or partially paid, not
    archived: what `invoices.selectors.OPEN_STATES` counts); a customer owes the sum of its
    rows.

    Rows are only ever inserted by the writers, never updated, so the triggers take no lock
    another writer could wait on: a payment and a sync page touching one customer cannot
    deadlock over a shared total. `invoices.services.open_balances_fold` (beat, every minute)
    folds a customer's rows into one (`folded`), so a read adds up about one row per customer
    and currency. No foreign-key constraints: a trigger row may outlive its customer or
    partner for a minute (their deletion deletes the invoices first, whose rows then add up
    to zero and are folded away); readers join the customers they list.

    The SQLite development path (bin/run) has no triggers: the selectors add up the invoices
    there, as they did before.
    """

    partner = models.ForeignKey(
        Partner, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=False
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,
    )
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(**MONEY)  # the change of their outstanding amount
    invoices = models.IntegerField()  # the change of their number of open invoices
    folded = models.BooleanField(default=False)

    objects = PartnerOwnedQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["partner", "customer"],
                include=["amount", "invoices"],
                name="openbalance_partner_customer",
            ),
            models.Index(
                fields=["partner"], condition=Q(folded=False), name="openbalance_unfolded"
            ),
        ]

    def __str__(self):
        return f"customer {self.customer_id}: {self.amount} {self.currency}, {self.invoices} open"
