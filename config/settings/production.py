"""Production: no defaults for secrets. A missing SECRET_KEY, DATABASE_URL, broker URL or
FIELD_ENCRYPTION_KEYS stops the process at boot. Passes `manage.py check --deploy`."""

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config import env
from config.logging import build_logging_config

from .base import *  # noqa: F403
from .base import LOG_LEVEL

DEBUG = False
SECRET_KEY = env.require("SECRET_KEY")
DATABASES = {
    "default": dj_database_url.parse(
        env.require("DATABASE_URL"),
        conn_max_age=env.get_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
CELERY_BROKER_URL = env.get("CELERY_BROKER_URL") or env.get("REDIS_URL")
if not CELERY_BROKER_URL:
    raise ImproperlyConfigured("Set CELERY_BROKER_URL (or REDIS_URL) in production.")
REDIS_URL = env.get("REDIS_URL", CELERY_BROKER_URL)
FIELD_ENCRYPTION_KEYS = env.get_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("Set FIELD_ENCRYPTION_KEYS (comma-separated Fernet keys).")
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key."
        ) from exc
AUTOTASK_INTEGRATION_CODE = env.require("AUTOTASK_INTEGRATION_CODE")

ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set ALLOWED_HOSTS in production.")

# Notification emails over SMTP (notifications/); the password stays in the environment.
EMAIL_HOST = env.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env.get_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env.get("DEFAULT_FROM_EMAIL", "PaySync <notifications@paysync.invalid>")
# Links in emails: the first allowed host over HTTPS unless said otherwise.
PAYSYNC_BASE_URL = env.get("PAYSYNC_BASE_URL") or f"https://{ALLOWED_HOSTS[0].lstrip('.')}"

# HTTPS is terminated by the load balancer in front of gunicorn.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.get_bool("SECURE_SSL_REDIRECT", True)
# Health probes come from inside the network over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.get_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_REFERRER_POLICY = "same-origin"

# Static files served by whitenoise from gunicorn, compressed and cache-busted.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOG_FORMAT = "json"
LOGGING = build_logging_config(level=LOG_LEVEL, fmt="json")
