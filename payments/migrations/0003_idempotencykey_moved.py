"""IdempotencyKey now belongs to partners (partners/migrations/0003): state only, the table and
its rows stay."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_periodic_tasks"),
        ("partners", "0003_idempotencykey"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyKey")],
            database_operations=[],
        ),
    ]
