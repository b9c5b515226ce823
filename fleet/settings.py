"""Fleet settings, read from the environment (see the README's table)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from fleet.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string "
            "(or set DJANGO_DEBUG=1 for local development only)."
        )
    SECRET_KEY = "insecure-debug-only-key"  # noqa: S105 - only reachable with DEBUG on

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials.apps.SimpleAppConfig",
    "sessions.apps.SessionsConfig",
    "alerts.apps.AlertsConfig",
    "fleet.apps.FleetConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "fleet.urls"
WSGI_APPLICATION = "fleet.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # Partials are a builtin, so moving to Django 6 (where they are
            # core) is a one-line change; the loaders are wrapped explicitly.
            "builtins": ["template_partials.templatetags.partials"],
            "debug": DEBUG,
            "loaders": [
                (
                    "template_partials.loader.Loader",
                    [
                        (
                            "django.template.loaders.cached.Loader",
                            [
                                "django.template.loaders.filesystem.Loader",
                                "django.template.loaders.app_directories.Loader",
                            ],
                        )
                    ],
                )
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# SQLite by default (one file, tuned for many concurrent writers); PostgreSQL
# through DATABASE_URL.
SQLITE_PATH = Path(env_str("FLEET_SQLITE_PATH", str(BASE_DIR / "var" / "fleet.sqlite3")))
SQLITE_OPTIONS = {
    # Writers take the lock at BEGIN and queue on the busy timeout instead of
    # failing with "database is locked" when a read transaction upgrades.
    "transaction_mode": "IMMEDIATE",
    "timeout": env_int("FLEET_SQLITE_BUSY_TIMEOUT", 30, minimum=0),
    "init_command": (
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "PRAGMA foreign_keys=ON;"
        "PRAGMA temp_store=MEMORY;"
        "PRAGMA cache_size=-20000;"
    ),
}

_database_url = env_str("DATABASE_URL")
if _database_url:
    try:
        _db = dj_database_url.parse(
            _database_url,
            conn_max_age=env_int("FLEET_DB_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db["OPTIONS"] = {**SQLITE_OPTIONS, **_db.get("OPTIONS", {})}
    elif _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_URL must point to PostgreSQL (postgres://...) or SQLite (sqlite:///...)"
        )
else:
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(SQLITE_PATH),
        "OPTIONS": SQLITE_OPTIONS,
    }
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Tests use a real file (not :memory:) so WAL, IMMEDIATE transactions and
    # several processes behave as they do in production.
    _db.setdefault("TEST", {})["NAME"] = env_str(
        "FLEET_TEST_SQLITE_PATH", str(BASE_DIR / "var" / "test.sqlite3")
    )
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("FLEET_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (WhiteNoise: compressed, hashed, far-future cached) ----------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security -----------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

FLEET_LOG_LEVEL = env_str("FLEET_LOG_LEVEL", "INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": FLEET_LOG_LEVEL},
    # runserver's line per request (`make run`) follows the level too, so the
    # simulator's API calls do not flood the terminal; 4xx and 5xx still show.
    "loggers": {
        "django.server": {"handlers": ["console"], "level": FLEET_LOG_LEVEL, "propagate": False}
    },
}

# --- Fleet --------------------------------------------------------------------
# A session is "stale" (its agent probably died) after this many seconds
# without activity; a running turn is "stuck" after this many seconds.
FLEET_STALE_AFTER = env_int("FLEET_STALE_AFTER", 30 * 60, minimum=1)
FLEET_STUCK_AFTER = env_int("FLEET_STUCK_AFTER", 15 * 60, minimum=1)
# Alerts (README "Alerts"): seconds a webhook delivery may take to connect
# and each read; whether webhooks may target private, loopback or link-local
# addresses (off: a webhook URL must not reach the internal network, SSRF);
# attempts of a failing delivery before it is given up.
FLEET_ALERTS_TIMEOUT = env_int("FLEET_ALERTS_TIMEOUT", 5, minimum=1)
FLEET_ALERTS_ALLOW_PRIVATE_TARGETS = env_bool("FLEET_ALERTS_ALLOW_PRIVATE_TARGETS", default=False)
FLEET_ALERTS_MAX_ATTEMPTS = env_int("FLEET_ALERTS_MAX_ATTEMPTS", 8, minimum=1)
# A rule opening (or resolving) more subjects than this in one run sends one
# notification per channel naming them all (no storm when a fleet crashes).
FLEET_ALERTS_GROUP_AFTER = env_int("FLEET_ALERTS_GROUP_AFTER", 5, minimum=1)
# Email alerts go through Django's SMTP backend, configured here (a timeout
# so a mail server that hangs cannot hold up the alerts run).
EMAIL_HOST = env_str("FLEET_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("FLEET_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("FLEET_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_str("FLEET_EMAIL_PASSWORD")
EMAIL_USE_TLS = env_bool("FLEET_EMAIL_STARTTLS", default=False)
EMAIL_USE_SSL = env_bool("FLEET_EMAIL_SSL", default=False)
EMAIL_TIMEOUT = env_int("FLEET_EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("FLEET_EMAIL_FROM", "fleet@localhost")
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("FLEET_EMAIL_STARTTLS and FLEET_EMAIL_SSL exclude each other")
# Largest content (or reasoning) of one message, in characters. A long tool
# result can be hundreds of KB.
FLEET_MAX_MESSAGE_CHARS = env_int("FLEET_MAX_MESSAGE_CHARS", 2_000_000, minimum=1)
# Size caps of a session's large fields, on the stored result (a PUT merges
# metadata): past one the write is refused (422). Metadata is measured in
# UTF-8 bytes of its compact JSON; todo and goal text in characters.
FLEET_MAX_METADATA_BYTES = env_int("FLEET_MAX_METADATA_BYTES", 64 * 1024, minimum=2)
FLEET_MAX_TODO_CHARS = env_int("FLEET_MAX_TODO_CHARS", 256 * 1024, minimum=0)
FLEET_MAX_GOAL_CHARS = env_int("FLEET_MAX_GOAL_CHARS", 16 * 1024, minimum=0)

# --- JSON API -----------------------------------------------------------------
# django-ninja serves the API; as an installed app its docs page uses the
# bundled Swagger UI assets (static files) instead of a CDN.
INSTALLED_APPS = [*INSTALLED_APPS, "ninja"]
# Largest request body the API reads, in bytes (413 above it). A batch of
# long tool results can be several MB.
FLEET_API_MAX_BODY_BYTES = env_int("FLEET_API_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
# Django refuses bodies above this before the API can answer; keep it in step.
DATA_UPLOAD_MAX_MEMORY_SIZE = FLEET_API_MAX_BODY_BYTES
# Most messages one append may carry (422 above it).
FLEET_API_MAX_BATCH = env_int("FLEET_API_MAX_BATCH", 1000, minimum=1)
# OTLP: most exports (requests) one API key may send a minute, per worker
# process (the default cache); past it 429 with Retry-After, the OTLP/HTTP
# spec's "slow down". 0 = no limit (a busy database still answers 503).
FLEET_OTLP_EXPORTS_PER_MINUTE = env_int("FLEET_OTLP_EXPORTS_PER_MINUTE", 0, minimum=0)

# --- Dashboard ----------------------------------------------------------------
# Seconds between polls of the live fragments (fleet page, active session).
FLEET_POLL_SECONDS = env_int("FLEET_POLL_SECONDS", 5, minimum=1)
# No inline script or style anywhere: htmx and the page scripts are static files.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Ops ---
# Bearer token that /metrics (Prometheus) requires; unset = /metrics is off (404).
FLEET_METRICS_TOKEN = env_str("FLEET_METRICS_TOKEN")
# Rows per transaction for reconcile, purge and reprice: each batch is its own
# short transaction, so agents writing meanwhile wait milliseconds, not minutes.
FLEET_OPS_BATCH_SIZE = env_int("FLEET_OPS_BATCH_SIZE", 5000, minimum=1)

# --- Production ---------------------------------------------------------------
# See the README's "Production". Behind HTTPS (required in production),
# FLEET_HTTPS=1 turns on secure cookies, HSTS and the redirect to https. It is
# off by default so `make run` keeps working on http://127.0.0.1.
FLEET_HTTPS = env_bool("FLEET_HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = FLEET_HTTPS
# Load balancers and Prometheus probe the app servers directly, over http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
# One year once on https (Django's deploy checklist); 0 sends no HSTS header.
SECURE_HSTS_SECONDS = env_int("FLEET_HSTS_SECONDS", 31_536_000 if FLEET_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("FLEET_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("FLEET_HSTS_PRELOAD", default=False)
if not SECURE_HSTS_PRELOAD:
    # Asking browsers to preload HSTS for the whole domain is its owner's
    # decision (hstspreload.org), not a default: do not nag about it.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Only behind a TLS-terminating proxy that sets X-Forwarded-Proto (and drops
# the one a client sends): otherwise anyone could claim https.
if env_bool("FLEET_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
STATIC_ROOT = Path(env_str("FLEET_STATIC_ROOT", str(STATIC_ROOT)))

# --- Throttling: dashboard/admin log-ins and bad API keys ---------------------
# Who the client is: REMOTE_ADDR, unless FLEET_PROXY_COUNT reverse proxies
# append to X-Forwarded-For; then the address the outermost of them saw (the
# N-th from the right). Never the client's own left-most claim (fleet/client_ip.py).
FLEET_PROXY_COUNT = env_int("FLEET_PROXY_COUNT", 0, minimum=0)
# django-axes: after FLEET_LOGIN_FAILURE_LIMIT failed log-ins for one username
# from one address, that pair is refused (429) until FLEET_LOGIN_COOLOFF_MINUTES
# pass without another try. Attempts live in the database (shared by every
# worker and server; the admin lists them and can delete a lockout).
FLEET_LOGIN_FAILURE_LIMIT = env_int("FLEET_LOGIN_FAILURE_LIMIT", 5, minimum=1)
FLEET_LOGIN_COOLOFF_MINUTES = env_int("FLEET_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
INSTALLED_APPS = [*INSTALLED_APPS, "axes"]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
MIDDLEWARE = [*MIDDLEWARE, "axes.middleware.AxesMiddleware"]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = FLEET_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=FLEET_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "fleet.client_ip.client_ip"
# No start-up banner on every manage.py run (cron output stays the command's
# own summary); failures are still logged with the username and address.
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "fleet.views.auth.locked_out"
# The JSON API: FLEET_API_BAD_KEY_LIMIT wrong keys from one address within
# FLEET_API_BAD_KEY_WINDOW seconds, and every request from it is refused (429)
# until the window ends; 0 turns it off. Counted in the default cache, which is
# per worker process (LocMemCache): a cheap check, no query.
FLEET_API_BAD_KEY_LIMIT = env_int("FLEET_API_BAD_KEY_LIMIT", 20, minimum=0)
FLEET_API_BAD_KEY_WINDOW = env_int("FLEET_API_BAD_KEY_WINDOW", 300, minimum=1)

# PostgreSQL: a connection pool per app-server process (psycopg_pool), instead
# of one persistent connection per process. Pooled connections are health
# checked when handed out; a pool cannot be combined with CONN_MAX_AGE.
FLEET_DB_POOL = env_bool("FLEET_DB_POOL", default=False)
if FLEET_DB_POOL:
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "FLEET_DB_POOL=1 needs PostgreSQL (DATABASE_URL=postgres://...); unset it for SQLite"
        )
    _pool = {
        "min_size": env_int("FLEET_DB_POOL_MIN_SIZE", 1, minimum=0),
        "max_size": env_int("FLEET_DB_POOL_MAX_SIZE", 4, minimum=1),
        # Seconds a request waits for a connection (then 503): keep it under
        # the load balancer's health-check timeout.
        "timeout": env_int("FLEET_DB_POOL_TIMEOUT", 5, minimum=1),
        # While the database is away the pool retries with a growing backoff;
        # giving up after 10 s lets the next request try at once, so service
        # resumes within seconds of the database's return, not minutes.
        "reconnect_timeout": 10,
    }
    if _pool["min_size"] > _pool["max_size"]:
        raise ImproperlyConfigured("FLEET_DB_POOL_MIN_SIZE must not exceed FLEET_DB_POOL_MAX_SIZE")
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {}), "pool": _pool}
# gunicorn's threads per worker (gunicorn.conf.py reads it too): each thread
# serving a request holds a connection, so fleet.W003 compares it to the pool.
FLEET_THREADS = env_int("FLEET_THREADS", 1, minimum=1)

# Logs: one JSON object a line (FLEET_LOG_FORMAT=text for plain lines); one
# line per API request and per manage.py command (fleet.log).
FLEET_LOG_FORMAT = env_str("FLEET_LOG_FORMAT", "json")
if FLEET_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"FLEET_LOG_FORMAT must be json or text, got {FLEET_LOG_FORMAT!r}")
LOGGING["formatters"] = {
    "json": {"()": "fleet.log.JsonFormatter"},
    "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
}
LOGGING["handlers"]["console"]["formatter"] = FLEET_LOG_FORMAT
MIDDLEWARE = [
    "fleet.log.RequestLogMiddleware",
    *MIDDLEWARE,
    "fleet.unavailable.DatabaseUnavailableMiddleware",
]
