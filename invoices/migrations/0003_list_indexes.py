"""List indexes led by the partner (issue 19, invoices/selectors.py). Built CONCURRENTLY (so
not in a transaction): a big invoices table keeps taking writes while they build. pg_trgm and
btree_gin are trusted extensions (PostgreSQL 13+): the database owner may create them.

The SQLite development path (bin/run) gets the plain b-tree indexes (no CONCURRENTLY, no
covering columns) and no trigram index: the operations below fall back there."""

from django.db import migrations, models

from invoices.migrations._concurrently import (
    AddIndexConcurrentlyOnPostgres,
    RemoveIndexConcurrentlyOnPostgres,
    on_postgresql,
)


def _postgres_sql(sql: str):
    def run(apps, schema_editor):
        if on_postgresql(schema_editor):
            schema_editor.execute(sql)

    return run


TRGM_CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoice_partner_number_trgm "
    "ON invoices_invoice USING gin (partner_id, upper(number) gin_trgm_ops)"
)
TRGM_DROP = "DROP INDEX CONCURRENTLY IF EXISTS invoice_partner_number_trgm"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("customers", "0002_customer_currency"),
        ("invoices", "0002_invoice_voided_at"),
        ("partners", "0005_hash_old_tokens_support_perms"),
    ]

    operations = [
        # Extensions stay on the way back (other objects may use them); not on SQLite.
        migrations.RunPython(
            _postgres_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm"), migrations.RunPython.noop
        ),
        migrations.RunPython(
            _postgres_sql("CREATE EXTENSION IF NOT EXISTS btree_gin"), migrations.RunPython.noop
        ),
        RemoveIndexConcurrentlyOnPostgres(
            model_name="invoice",
            name="invoices_in_partner_3dc2e4_idx",
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(
                fields=["partner", "status", "id"],
                include=("archived_at", "currency", "total", "outstanding", "customer"),
                name="invoice_partner_status",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(
                fields=["partner", "invoice_date", "id"],
                include=("archived_at", "currency", "total", "outstanding"),
                name="invoice_partner_date",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(fields=["partner", "due_date", "id"], name="invoice_partner_due"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(fields=["partner", "total", "id"], name="invoice_partner_total"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="invoice",
            index=models.Index(
                fields=["partner", "outstanding", "id"], name="invoice_partner_outstanding"
            ),
        ),
        migrations.RunPython(_postgres_sql(TRGM_CREATE), _postgres_sql(TRGM_DROP)),
    ]
