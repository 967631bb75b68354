"""Newcomer defaults: nothing to install. SQLite and kombu's filesystem transport under var/,
a secret key and a field-encryption key generated once into var/ (never committed)."""

import os

from cryptography.fernet import Fernet

from config import env

from .base import *  # noqa: F403
from .base import CELERY_BROKER_URL, DATABASES, FIELD_ENCRYPTION_KEYS, VAR_DIR

DEBUG = env.get_bool("DJANGO_DEBUG", True)
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _persistent_value(filename: str, make) -> str:
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(make())
        os.chmod(path, 0o600)
    return path.read_text().strip()


SECRET_KEY = env.get("SECRET_KEY") or _persistent_value(
    "dev-secret-key", lambda: Fernet.generate_key().decode()
)
if not FIELD_ENCRYPTION_KEYS:
    FIELD_ENCRYPTION_KEYS = [
        _persistent_value("dev-field-key", lambda: Fernet.generate_key().decode())
    ]

if "default" not in DATABASES:
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "paysync.sqlite3",
        # SQLite is shared by web, worker and beat processes: wait for locks instead of failing.
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }

if not CELERY_BROKER_URL:
    # kombu's filesystem transport: separate worker and beat processes share this folder.
    _broker_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }

# Emails are printed by the process that sends them (the worker, for notifications).
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
