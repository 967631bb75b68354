"""The payments app's periodic tasks (django-celery-beat, database scheduler). Created once;
ops may edit them in the admin. Never deleted and recreated."""

from django.db import migrations

TASKS = [
    ("payments: write-back sweep (every 30 seconds)", "payments.writeback.sweep", 30),
    ("payments: re-enqueue lost webhook events (every 2 minutes)", "payments.webhooks.rematch_stale", 120),
    ("payments: purge old Idempotency-Keys (hourly)", "payments.idempotency.purge", 3600),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in TASKS:
        schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": schedule, "enabled": True}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[t[0] for t in TASKS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
