"""The Idempotency-Key store moves from payments to partners (every partner's POSTs use it, not
only payments). State only: the table keeps its name (`payments_idempotencykey`) and its rows.
The content type is relabelled in place, so its permissions, and the support group's grant of
`view_idempotencykey`, survive the move (payments/migrations/0003 drops the old state)."""

import django.db.models.deletion
from django.db import migrations, models


def relabel_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    old = ContentType.objects.filter(app_label="payments", model="idempotencykey").first()
    if old is None:
        return  # permissions not created yet: post_migrate makes them under partners
    new = ContentType.objects.filter(app_label="partners", model="idempotencykey").first()
    if new is None:
        old.app_label = "partners"
        old.save(update_fields=["app_label"])
        return
    # Both exist (a database where post_migrate ran in between): keep the grants of the old
    # permissions on the new content type's permissions, then drop the old one.
    Permission = apps.get_model("auth", "Permission")
    for perm in Permission.objects.filter(content_type=old):
        target = Permission.objects.filter(content_type=new, codename=perm.codename).first()
        if target is None:
            perm.content_type = new
            perm.save(update_fields=["content_type"])
            continue
        for group in perm.group_set.all():
            group.permissions.add(target)
    old.delete()


def restore_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="payments", model="idempotencykey").exists():
        ContentType.objects.filter(app_label="partners", model="idempotencykey").update(
            app_label="payments"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("partners", "0002_support_group"),
        ("payments", "0002_periodic_tasks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyKey",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("key", models.CharField(max_length=255)),
                        ("fingerprint", models.CharField(max_length=64)),
                        ("in_progress", models.BooleanField(default=True)),
                        ("response_status", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("response_body", models.JSONField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "partner",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="partners.partner",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "payments_idempotencykey",
                        "indexes": [
                            models.Index(
                                fields=["created_at"], name="payments_id_created_34bf37_idx"
                            )
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("partner", "key"), name="idempotency_key_per_partner"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_type, restore_content_type),
    ]
