"""Void and re-issue (ReconciliationDrift.replacement, the voided_after_payment and
writeback_not_applied reasons, PaymentMove: the audit of payments moved to a replacement), the
read-back outcome of a write-back attempt, and the support group's view permission on
PaymentMove (partners/0002_support_group)."""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def grant_support_view(apps, schema_editor):
    support = importlib.import_module("partners.migrations.0002_support_group")
    support.create_support_group(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("invoices", "0001_initial"),
        ("partners", "0003_idempotencykey"),
        ("payments", "0004_reconciliation_drift"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="reconciliationdrift",
            name="replacement",
            field=models.ForeignKey(
                blank=True,
                help_text="Voided after payment: the invoice Autotask issued in its place, if found.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="invoices.invoice",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationdrift",
            name="reason",
            field=models.CharField(
                choices=[
                    (
                        "paid_date_cleared_in_autotask",
                        "paidDate cleared in Autotask while payments here cover the invoice",
                    ),
                    (
                        "paid_date_changed_in_autotask",
                        "paidDate in Autotask differs from the one we wrote",
                    ),
                    (
                        "paid_date_not_cleared",
                        "paidDate we cleared is still (or again) set in Autotask",
                    ),
                    (
                        "writeback_not_applied",
                        "Autotask accepted our paidDate but reading it back shows another value",
                    ),
                    ("voided_after_payment", "Voided in Autotask after payment here"),
                ],
                max_length=40,
            ),
        ),
        migrations.AlterField(
            model_name="writebackattempt",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("sending", "Sending"),
                    ("sent", "Sent"),
                    ("retry", "Will retry"),
                    ("parked", "Parked"),
                    ("failed", "Failed"),
                    ("mismatch", "Not applied (read back)"),
                ],
                default="sending",
                max_length=10,
            ),
        ),
        migrations.CreateModel(
            name="PaymentMove",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("amount", models.DecimalField(decimal_places=2, max_digits=14)),
                ("via", models.CharField(help_text="dashboard, api or ops.", max_length=20)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "from_invoice",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="invoices.invoice",
                    ),
                ),
                (
                    "moved_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "partner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="partners.partner",
                    ),
                ),
                (
                    "payment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="moves",
                        to="payments.payment",
                    ),
                ),
                (
                    "to_invoice",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="invoices.invoice",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.RunPython(grant_support_view, migrations.RunPython.noop),
    ]
