"""Test settings: PostgreSQL and Redis are required (bin/test starts throwaway ones).

Never SQLite: the suite proves behaviour that depends on PostgreSQL (row locks, ON CONFLICT,
conditional UPDATEs)."""

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config import env

from .base import *  # noqa: F403
from .base import CELERY_BROKER_POLLING_INTERVAL, DATABASES

DEBUG = False
SECRET_KEY = "test-only-not-a-secret"
if "default" not in DATABASES or "postgres" not in DATABASES["default"]["ENGINE"]:
    raise ImproperlyConfigured(
        "Tests need PostgreSQL: run bin/test (it starts one) or set DATABASE_URL=postgres://..."
    )
REDIS_URL = env.get("REDIS_URL")
if not REDIS_URL:
    raise ImproperlyConfigured("Tests need Redis: run bin/test (it starts one) or set REDIS_URL.")
CELERY_BROKER_URL = env.get("CELERY_BROKER_URL", REDIS_URL)
# The test profile of ../shared/RELIABILITY.md §2: short visibility timeout, fast restore.
CELERY_VISIBILITY_TIMEOUT = 20
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 20,
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "polling_interval": CELERY_BROKER_POLLING_INTERVAL,  # base.py: why
}
# Fresh keys per test process: no key is ever committed.
# (A worker subprocess started by a test gets the test process's keys through the environment.)
FIELD_ENCRYPTION_KEYS = env.get_list("FIELD_ENCRYPTION_KEYS") or [Fernet.generate_key().decode()]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTOTASK_INTEGRATION_CODE = "PAYSYNC-TEST-INTEGRATION-CODE"
# Never the real Autotask from tests: a closed port unless a test points it at the sandbox.
# A worker subprocess started by a test is pointed at the test's sandbox (loopback only).
AUTOTASK_ZONE_LOOKUP_URL = env.get("AUTOTASK_ZONE_LOOKUP_URL", "")
if not AUTOTASK_ZONE_LOOKUP_URL.startswith("http://127.0.0.1:"):
    AUTOTASK_ZONE_LOOKUP_URL = "http://127.0.0.1:9/atservicesrest/v1.0/zoneInformation"
AUTOTASK_TIMEOUT_SECONDS = 5.0
AUTOTASK_CONNECT_TIMEOUT_SECONDS = 2.0
MEDIA_ROOT = BASE_DIR / "var" / "test-media"  # noqa: F405
# Static files straight from the app folders (no collectstatic in tests).
# pytest-django uses locmem anyway; said here so a worker subprocess never reaches SMTP.
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
