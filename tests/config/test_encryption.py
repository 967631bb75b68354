"""Stored secrets: encrypted at rest, masked everywhere, fail closed, rotatable (SE-1..3, SE-5)."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from config.encryption import Sealed, SecretUnavailable, _keyring, key_id
from integrations.models import AutotaskConnection

SECRET = "CANARY-8e1f2a7c-autotask-secret"


@pytest.fixture
def connection_a(partner_a):
    return AutotaskConnection.objects.create(
        partner=partner_a,
        account_email="ops@alpha.test",
        username="api-user-1234@alpha.test",
        secret=SECRET,
        username_last4="test",
    )


def raw_column(pk, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM integrations_autotaskconnection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_secret_is_not_in_the_database_column(connection_a):
    stored = raw_column(connection_a.pk, "secret")
    assert SECRET not in stored
    prefix, _kid, token = stored.split(":", 2)
    assert prefix == "v1" and token.startswith("gAAAAA")
    assert "api-user-1234" not in raw_column(connection_a.pk, "username")


@pytest.mark.django_db
def test_secret_reads_back_sealed_and_reveals(connection_a):
    fresh = AutotaskConnection.objects.get(pk=connection_a.pk)
    assert isinstance(fresh.secret, Sealed)
    assert fresh.secret.reveal() == SECRET
    assert SECRET not in repr(fresh.secret) and SECRET not in str(fresh.secret)
    assert SECRET not in repr(fresh.__dict__)


@pytest.mark.django_db
def test_wrong_key_fails_closed(connection_a, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    fresh = AutotaskConnection.objects.get(pk=connection_a.pk)  # loading still works
    with pytest.raises(SecretUnavailable):
        fresh.secret.reveal()


@pytest.mark.django_db
def test_serialised_form_holds_only_ciphertext(connection_a):
    from django.core import serializers

    dumped = serializers.serialize("json", AutotaskConnection.objects.all())
    assert SECRET not in dumped
    assert "gAAAAA" in dumped


@pytest.mark.django_db
def test_rotation_with_two_keys(connection_a, partner_b, settings, capsys):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    other = AutotaskConnection.objects.create(
        partner=partner_b, account_email="b@b.test", username="u-b", secret="secret-b"
    )
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("rotate_encryption_keys")
    out = capsys.readouterr().out
    assert "total: 4 re-encrypted, 0 undecryptable" in out
    for row in (connection_a, other):
        assert raw_column(row.pk, "secret").split(":")[1] == key_id(new_key)

    # Second run touches nothing.
    call_command("rotate_encryption_keys")
    assert "total: 0 re-encrypted" in capsys.readouterr().out

    # The old key can now be dropped.
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert AutotaskConnection.objects.get(pk=connection_a.pk).secret.reveal() == SECRET
    assert AutotaskConnection.objects.get(pk=other.pk).secret.reveal() == "secret-b"


@pytest.mark.django_db
def test_rotation_reports_undecryptable_rows(connection_a, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    before = raw_column(connection_a.pk, "secret")
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_encryption_keys")
    assert raw_column(connection_a.pk, "secret") == before


def test_empty_key_list_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    from config.encryption import seal

    _keyring.cache_clear()
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured):
        seal("x")
