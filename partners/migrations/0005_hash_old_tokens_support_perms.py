"""API tokens (issue 18), data side:

1. DRF's plaintext tokens (`authtoken_token`, when that table exists: rest_framework.authtoken
   is no longer installed) become ApiToken rows holding only the SHA-256 of the old key, so
   integrations keep working until the token expires (API_TOKEN_TTL_DAYS from now); then the
   plaintext table is dropped. Tokens of users without a partner (staff) could never call the
   partner API and are dropped with it.
2. The support group may view the API tokens and django-axes' failed sign-ins (Unlock is an ops
   action, partners/admin.py).
"""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.utils import timezone

PLAINTEXT_TABLE = "authtoken_token"


def hash_plaintext_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAINTEXT_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("partners", "ApiToken")
    User = apps.get_model("partners", "User")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {PLAINTEXT_TABLE}")  # noqa: S608  # nosec B608 (a constant table name)
        rows = cursor.fetchall()
    partners = dict(User.objects.filter(partner__isnull=False).values_list("id", "partner_id"))
    expires = timezone.now() + timedelta(days=int(getattr(settings, "API_TOKEN_TTL_DAYS", 90)))
    for key, user_id in rows:
        if user_id not in partners:
            continue
        ApiToken.objects.create(
            partner_id=partners[user_id],
            user_id=user_id,
            name="API token (from before hashing)",
            prefix=key[:8],
            digest=hashlib.sha256(key.encode()).hexdigest(),
            expires_at=expires,
        )
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(PLAINTEXT_TABLE)}")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


def grant_support_views(apps, schema_editor):
    for label in ("partners", "axes"):
        app_config = apps.get_app_config(label)
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="support")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="partners", codename="view_apitoken"),
        *Permission.objects.filter(content_type__app_label="axes", codename="view_accessattempt"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0004_api_tokens"),
        ("axes", "0010_accessattemptexpiration"),
    ]

    operations = [
        migrations.RunPython(hash_plaintext_tokens, migrations.RunPython.noop),
        migrations.RunPython(grant_support_views, migrations.RunPython.noop),
    ]
