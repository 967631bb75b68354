"""The "support" group for ops staff: view every model of our apps and of django-celery-beat,
and run the ops actions (partners.run_ops_actions). No add, change or delete permission: money
fields and credentials stay out of their reach, and nothing is deleted by support.

Permissions are normally created by post_migrate, after every migration has run; on a fresh
database they do not exist yet when this runs, so they are created here first (idempotent).
A new model needs a new migration that adds its view permission (tests/admin/test_permissions.py
fails until it has one).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "support"
APPS = [
    "partners",
    "integrations",
    "customers",
    "invoices",
    "payments",
    "sync",
    "django_celery_beat",
]


def create_support_group(apps, schema_editor=None):
    """Also called by tests with the real app registry, after a transactional test's flush
    has emptied the tables this migration filled."""
    for label in APPS:
        app_config = apps.get_app_config(label)
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    perms = Permission.objects.filter(
        content_type__app_label__in=APPS, codename__startswith="view_"
    ) | Permission.objects.filter(content_type__app_label="partners", codename="run_ops_actions")
    group.permissions.add(*perms)


def remove_support_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("partners", "0001_initial"),
        ("integrations", "0002_integrationevent"),
        ("customers", "0001_initial"),
        ("invoices", "0001_initial"),
        ("payments", "0002_periodic_tasks"),
        ("sync", "0002_periodic_tasks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="partner",
            options={
                "ordering": ["name"],
                "permissions": [("run_ops_actions", "Can run ops actions")],
            },
        ),
        migrations.RunPython(create_support_group, remove_support_group),
    ]
