"""Settings shared by every environment. Values come from the environment (see config/env.py);
development.py adds the newcomer defaults, production.py refuses to start without secrets."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from kombu import Queue

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env.get("PAYSYNC_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env.get("SECRET_KEY")
DEBUG = env.get_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",  # sign-in lockout (partners/login_security.py)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Our apps in layer order, lowest first (README "Architecture"; bin/lint enforces it).
    "partners",
    "integrations",
    "customers",
    "invoices",
    "sync",
    "payments",
    "notifications",
    "ops",
    "sandbox",
]

MIDDLEWARE = [
    "config.logging.RequestIdMiddleware",
    # Control characters in query parameters → 400; JSON 404s under /api/ (config/middleware.py).
    "config.middleware.RequestHygieneMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "partners.middleware.PartnerTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "partners.context_processors.partner",
            ],
            # `money` and `when` filters in every template (partners/formatting.py).
            "builtins": ["partners.templatetags.paysync"],
        },
    },
]

# Database: DATABASE_URL when set; development.py falls back to SQLite under var/.
DATABASE_URL = env.get("DATABASE_URL")
DATABASES = {}
if DATABASE_URL:
    DATABASES["default"] = dj_database_url.parse(
        DATABASE_URL, conn_max_age=env.get_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # No parallel plans by default: our queries are led by the partner on an index and
        # read a page, and starting parallel workers costs more than it saves (2,000,000
        # invoices, bench/list_scale.py: the home page 57 → 40 ms, the API's invoice list
        # 50 → 30 ms; a gather's start-up alone was 5-10 ms). DB_PARALLEL_WORKERS sets
        # max_parallel_workers_per_gather for our connections (PostgreSQL's default is 2).
        options = DATABASES["default"].setdefault("OPTIONS", {})
        parallel = f"-c max_parallel_workers_per_gather={env.get_int('DB_PARALLEL_WORKERS', 0)}"
        options["options"] = f"{options.get('options', '')} {parallel}".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "partners.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

# --- Sign-in lockout and API tokens (partners/login_security.py, partners/tokens.py) --------
AUTHENTICATION_BACKENDS = [
    "partners.login_security.LockoutBackend",  # django-axes' AxesStandaloneBackend, first
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.get_int("LOGIN_FAILURE_LIMIT", 20)
AXES_COOLOFF_TIME = timedelta(minutes=env.get_int("LOGIN_LOCKOUT_MINUTES", 15))
# Per username (from any address) and, separately, per client address (for any username).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout do not extend it: "try again in 15 minutes" stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "partners.login_security.lockout_response"
AXES_CLIENT_IP_CALLABLE = "partners.login_security.client_ip"
# Proxies in front of us that append to X-Forwarded-For (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.get_int("TRUSTED_PROXY_COUNT", 0)
AXES_ENABLE_ADMIN = False  # partners/admin.py registers the attempts with an Unlock action
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in User.last_login already
AXES_VERBOSE = False
API_TOKEN_TTL_DAYS = env.get_int("API_TOKEN_TTL_DAYS", 90)

LANGUAGE_CODE = "en-us"
# Babel locale for money on the dashboard (symbols, grouping): partners/formatting.py.
PAYSYNC_MONEY_LOCALE = env.get("PAYSYNC_MONEY_LOCALE", "en_US")
# Where the dashboard is reached: absolute links in notification emails (notifications/).
PAYSYNC_BASE_URL = env.get("PAYSYNC_BASE_URL", "http://127.0.0.1:8000")

# --- Email (notifications/services.py): console in development, locmem in tests, SMTP from the
# environment in production.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DEFAULT_FROM_EMAIL = env.get("DEFAULT_FROM_EMAIL", "PaySync <notifications@paysync.invalid>")
EMAIL_TIMEOUT = 10  # seconds; a stuck SMTP server must not hold the check
TIME_ZONE = "UTC"
# English only, no translation catalogues: off, a rendered value skips the active-language
# look-up (a customers page of 50 rows made ~700 of them; bench/list_scale.py).
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.get("STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_ROOT = Path(env.get("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First: its authenticate_header makes unauthenticated calls 401 + WWW-Authenticate.
        "partners.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["partners.tenancy.IsPartnerUser"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PaySync API",
    "DESCRIPTION": "Autotask invoices, customers, payments and syncs of one partner.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The run status enum appears in the sync-run and manual-sync components: one name for it.
    "ENUM_NAME_OVERRIDES": {"SyncRunStatusEnum": "sync.models.SyncRun.Status"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.add_standard_error_responses",
        "config.api.describe_query_strings",
        "config.api.tighten_decimal_patterns",
        "config.api.describe_request_strings",
        "config.api.add_links",
    ],
}

# --- Celery (see config/celery.py and ../shared/RELIABILITY.md §2) --------------------------
REDIS_URL = env.get("REDIS_URL")
CELERY_BROKER_URL = env.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_VISIBILITY_TIMEOUT = env.get_int("CELERY_VISIBILITY_TIMEOUT", 900)
# Redis: kombu's BRPOP timeout (`polling_interval`, 1 s by default). A worker whose prefetch is
# full stops reading and only asks again when that BRPOP cycle ends, so at the default a webhook
# waited ~1 s (p50) between its acknowledgement and its task even at 10 deliveries/s; at 0.1 s
# it is ~0.15 s (bench/webhook_latency.py "processed"). An idle worker sends 10 BRPOPs/s.
CELERY_BROKER_POLLING_INTERVAL = env.get_float("CELERY_BROKER_POLLING_INTERVAL", 0.1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": env.get_int("CELERY_UNACKED_RESTORE_INTERVAL", 10),
    "polling_interval": CELERY_BROKER_POLLING_INTERVAL,
}
# Celery's Django fixup closes every database connection before and after each task unless
# this is set (it then closes them every 2 x N tasks); config/celery.py instead runs Django's
# close_old_connections() around each task, honouring DB_CONN_MAX_AGE and the health check.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.get_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env.get_int("CELERY_TASK_SOFT_TIME_LIMIT", 270)
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0
CELERY_TASK_ALWAYS_EAGER = False  # eager mode only inside tests that ask for it
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (
    Queue("default"),
    Queue("sync"),
    Queue("writeback"),
    Queue("webhooks"),
)
# Routing by module: every task in sync/ runs on the sync queue, and so on.
CELERY_TASK_ROUTES = {
    "sync.*": {"queue": "sync"},
    "payments.writeback.*": {"queue": "writeback"},
    "payments.webhooks.*": {"queue": "webhooks"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Autotask -------------------------------------------------------------------------------
# Our integration code (the "API tracking identifier" of our Integration Vendor, R2): a platform
# setting, never typed by partners.
AUTOTASK_INTEGRATION_CODE = env.get("AUTOTASK_INTEGRATION_CODE", "PAYSYNC-DEV-INTEGRATION-CODE")
AUTOTASK_ZONE_LOOKUP_URL = env.get(
    "AUTOTASK_ZONE_LOOKUP_URL",
    "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation",
)
AUTOTASK_TIMEOUT_SECONDS = env.get_float("AUTOTASK_TIMEOUT_SECONDS", 30.0)
AUTOTASK_CONNECT_TIMEOUT_SECONDS = env.get_float("AUTOTASK_CONNECT_TIMEOUT_SECONDS", 5.0)
AUTOTASK_MAX_CONCURRENCY = env.get_int("AUTOTASK_MAX_CONCURRENCY", 3)
AUTOTASK_BUDGET_SHARE = env.get_float("AUTOTASK_BUDGET_SHARE", 0.5)
AUTOTASK_MAX_RETRIES = env.get_int("AUTOTASK_MAX_RETRIES", 5)

# --- Stored secrets -------------------------------------------------------------------------
# A comma-separated list of Fernet keys: the first encrypts, all decrypt (MultiFernet).
FIELD_ENCRYPTION_KEYS = env.get_list("FIELD_ENCRYPTION_KEYS", [])

# --- Security defaults that hold everywhere ------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
METRICS_TOKEN = env.get("METRICS_TOKEN")

# Content-Security-Policy (django-csp) on every answer: scripts only from our own origin, no
# inline script anywhere (page scripts live in static/js/, confirmations are `data-confirm`
# attributes, Swagger UI's start-up script is served as a file by SpectacularSwaggerSplitView).
# Styles allow 'unsafe-inline' for the Django admin and Swagger UI, which set style attributes;
# our own templates keep their CSS in static/css/app.css. data: images are Swagger UI's icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

from config.logging import build_logging_config  # noqa: E402

LOG_LEVEL = env.get("LOG_LEVEL", "INFO")
LOG_FORMAT = env.get("LOG_FORMAT", "text")
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
