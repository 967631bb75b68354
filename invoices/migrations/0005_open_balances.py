"""Open balances kept by PostgreSQL (invoices.models.OpenBalance): the table, the statement
triggers on `invoices_invoice` that append to it, its first contents, and the beat entry that
folds it.

The triggers' notion of "open" is `invoices.selectors.OPEN_STATES` and `archived_at IS NULL`,
written out in SQL below: a change of either needs a migration that replaces the function
(tests/invoices/test_open_balances.py compares the rows with the invoices, every status).

PostgreSQL: one transaction. The invoices table is locked against writes (reads go on) from
before the triggers exist until the balances are filled from it, so no write is counted twice
or missed; filling reads the open invoices once (2,000,000 invoices: a few seconds). SQLite
(bin/run): the table only; the selectors add up the invoices there.
"""

import django.db.models.deletion
from django.db import migrations, models

from invoices.migrations._concurrently import on_postgresql


FUNCTION = """
CREATE FUNCTION invoices_open_balance_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO invoices_openbalance
            (partner_id, customer_id, currency, amount, invoices, folded)
        SELECT partner_id, customer_id, currency, sum(outstanding), count(*), false
        FROM new_rows WHERE status IN ('open', 'partially_paid') AND archived_at IS NULL
        GROUP BY partner_id, customer_id, currency;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO invoices_openbalance
            (partner_id, customer_id, currency, amount, invoices, folded)
        SELECT partner_id, customer_id, currency, -sum(outstanding), -count(*), false
        FROM old_rows WHERE status IN ('open', 'partially_paid') AND archived_at IS NULL
        GROUP BY partner_id, customer_id, currency;
    ELSE
        INSERT INTO invoices_openbalance
            (partner_id, customer_id, currency, amount, invoices, folded)
        SELECT partner_id, customer_id, currency, sum(amount), sum(n), false
        FROM (
            SELECT partner_id, customer_id, currency, outstanding AS amount, 1 AS n
            FROM new_rows WHERE status IN ('open', 'partially_paid') AND archived_at IS NULL
            UNION ALL
            SELECT partner_id, customer_id, currency, -outstanding, -1
            FROM old_rows WHERE status IN ('open', 'partially_paid') AND archived_at IS NULL
        ) AS changes
        GROUP BY partner_id, customer_id, currency
        HAVING sum(amount) <> 0 OR sum(n) <> 0;
    END IF;
    RETURN NULL;
END
$$;
"""

TRIGGERS = """
CREATE TRIGGER invoices_open_balance_insert AFTER INSERT ON invoices_invoice
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_open_balance_change();
CREATE TRIGGER invoices_open_balance_update AFTER UPDATE ON invoices_invoice
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_open_balance_change();
CREATE TRIGGER invoices_open_balance_delete AFTER DELETE ON invoices_invoice
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_open_balance_change();
"""

FILL = """
INSERT INTO invoices_openbalance (partner_id, customer_id, currency, amount, invoices, folded)
SELECT partner_id, customer_id, currency, sum(outstanding), count(*), true
FROM invoices_invoice WHERE status IN ('open', 'partially_paid') AND archived_at IS NULL
GROUP BY partner_id, customer_id, currency;
"""

DROP = """
DROP TRIGGER IF EXISTS invoices_open_balance_insert ON invoices_invoice;
DROP TRIGGER IF EXISTS invoices_open_balance_update ON invoices_invoice;
DROP TRIGGER IF EXISTS invoices_open_balance_delete ON invoices_invoice;
DROP FUNCTION IF EXISTS invoices_open_balance_change();
"""

BEAT = ("invoices: fold open balances (every minute)", "invoices.fold_open_balances", 60)


def triggers_on(apps, schema_editor):
    if not on_postgresql(schema_editor):
        return
    schema_editor.execute("LOCK TABLE invoices_invoice IN SHARE ROW EXCLUSIVE MODE")
    schema_editor.execute(FUNCTION)
    schema_editor.execute(TRIGGERS)
    schema_editor.execute(FILL)


def triggers_off(apps, schema_editor):
    if on_postgresql(schema_editor):
        schema_editor.execute(DROP)


def beat_on(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, seconds = BEAT
    schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": schedule, "enabled": True}
    )


def beat_off(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=BEAT[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0002_customer_currency"),
        ("invoices", "0004_list_indexes_due_covering"),
        ("partners", "0005_hash_old_tokens_support_perms"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="OpenBalance",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                ("amount", models.DecimalField(decimal_places=2, max_digits=14)),
                ("invoices", models.IntegerField()),
                ("folded", models.BooleanField(default=False)),
                (
                    "customer",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="customers.customer",
                    ),
                ),
                (
                    "partner",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="partners.partner",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["partner", "customer"],
                        include=("amount", "invoices"),
                        name="openbalance_partner_customer",
                    ),
                    models.Index(
                        condition=models.Q(("folded", False)),
                        fields=["partner"],
                        name="openbalance_unfolded",
                    ),
                ],
            },
        ),
        migrations.RunPython(triggers_on, triggers_off),
        migrations.RunPython(beat_on, beat_off),
    ]
