"""Production settings refuse to start without their secrets and pass `check --deploy`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "x" * 60 + "-production-check-only-0123456789",
    "DATABASE_URL": "postgres://paysync@127.0.0.1:5432/paysync",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "AUTOTASK_INTEGRATION_CODE": "VENDOR-CODE",
    "ALLOWED_HOSTS": "paysync.example.com",
}


def run_manage(env_overrides, *args):
    # Only what a deployment would have: not the test run's broker, nor the browser tests'
    # DJANGO_ALLOW_ASYNC_UNSAFE.
    dropped = {"CELERY_BROKER_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in dropped}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_passes_check_deploy_without_warnings():
    result = run_manage(PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "FIELD_ENCRYPTION_KEYS",
        "AUTOTASK_INTEGRATION_CODE",
    ],
)
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing.split("_URL")[0] in result.stderr or "broker" in result.stderr.lower()


def test_production_refuses_a_malformed_encryption_key():
    result = run_manage({**PRODUCTION_ENV, "FIELD_ENCRYPTION_KEYS": "not-a-key"}, "check")
    assert result.returncode != 0
    assert "not a Fernet key" in result.stderr
    assert "not-a-key" not in result.stderr


def test_development_defaults_need_nothing(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.development",
        "PAYSYNC_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    code = (
        "from django.conf import settings;"
        "print(settings.DATABASES['default']['ENGINE']);"
        "print(settings.CELERY_BROKER_URL)"
    )
    result = run_manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    engine, broker = result.stdout.split()[-2:]
    assert engine == "django.db.backends.sqlite3"
    assert broker == "filesystem://"
    assert (tmp_path / "broker" / "queue").is_dir()
