"""The due-date index carries what the list's count and totals read (like the invoice-date index:
an index-only count of a due-date range), the status index the due date too (the home page's
outstanding and overdue totals: an index-only scan of the open invoices, 50 → 25 ms), and the invoices' lone partner index goes: every index
of the table is led by the partner, and that one cost every sync write and drew the planner into
walking all of a big partner's rows to filter them (issue 19, bench/list_scale.py).

PostgreSQL: built and dropped CONCURRENTLY (writes go on), the new index under a new name before
the old one goes. SQLite (bin/run): the plain operations."""

import django.db.models.deletion
from django.db import migrations, models

from invoices.migrations._concurrently import (
    AddIndexConcurrentlyOnPostgres,
    RemoveIndexConcurrentlyOnPostgres,
    on_postgresql,
)


def _partner_index(schema_editor) -> str | None:
    """The name of the index on (partner_id) alone, whatever Django called it."""
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'invoices_invoice' "
            "AND indexdef LIKE '%%(partner_id)'"
        )
        row = cur.fetchone()
    return row[0] if row else None


class DropPartnerIndex(migrations.AlterField):
    """`db_index=False` on the partner: DROP INDEX CONCURRENTLY on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not on_postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        name = _partner_index(schema_editor)
        if name:
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        return None

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not on_postgresql(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        if not _partner_index(schema_editor):
            schema_editor.execute(
                "CREATE INDEX CONCURRENTLY invoices_invoice_partner_id_0f360b39 "
                "ON invoices_invoice (partner_id)"
            )
        return None


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("customers", "0002_customer_currency"),
        ("invoices", "0003_list_indexes"),
        ("partners", "0005_hash_old_tokens_support_perms"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(
                fields=["partner", "status", "id"],
                include=("archived_at", "currency", "total", "outstanding", "customer", "due_date"),
                name="invoice_partner_status_cover",
            ),
        ),
        RemoveIndexConcurrentlyOnPostgres(model_name="invoice", name="invoice_partner_status"),
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(
                fields=["partner", "due_date", "id"],
                include=("archived_at", "currency", "total", "outstanding"),
                name="invoice_partner_due_cover",
            ),
        ),
        RemoveIndexConcurrentlyOnPostgres(model_name="invoice", name="invoice_partner_due"),
        DropPartnerIndex(
            model_name="invoice",
            name="partner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="partners.partner",
            ),
        ),
    ]
