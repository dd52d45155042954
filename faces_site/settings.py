"""
Faces settings: one module, configured by the environment.

With no variables set this is the embedded default: SQLite, django-q2's ORM
broker, files on local disk under ``FACES_DATA_DIR`` and the local face engine.
Setting ``DATABASE_URL``, ``REDIS_URL``, ``AWS_STORAGE_BUCKET_NAME`` and
``FACES_ENGINE=rekognition`` moves each part to its scale-out counterpart.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import dj_database_url

from faces_site.environment import default_workers, env, env_bool, env_int, env_list
from faces_site.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


FACES_DATA_DIR = Path(env("FACES_DATA_DIR", str(BASE_DIR / "var"))).resolve()
FACES_DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """Use SECRET_KEY, or generate one once and keep it under FACES_DATA_DIR."""
    if env("SECRET_KEY"):
        return env("SECRET_KEY")
    key_file = FACES_DATA_DIR / "secret_key"
    if not key_file.exists():
        # Written aside (mode 0600), then linked into place: processes starting
        # at once on a new data folder (web and worker) all get the one whole key.
        fd, aside = tempfile.mkstemp(dir=FACES_DATA_DIR, prefix=".secret_key-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
            try:
                os.link(aside, key_file)
            except FileExistsError:
                pass  # another process was first: use its key
        finally:
            os.unlink(aside)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "accounts.instagram",
    "django_q",
    "accounts",
    "indexing",
    "search",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "faces_site.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "faces_site.middleware.UploadLimitsMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "faces_site.urls"
WSGI_APPLICATION = "faces_site.wsgi.application"

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
                "accounts.context_processors.consent",
            ],
        },
    },
]

# Database: SQLite under FACES_DATA_DIR unless DATABASE_URL says otherwise.
# WAL + IMMEDIATE transactions let the web process and the worker write side by
# side without "database is locked" errors. Connections persist (DB_CONN_MAX_AGE)
# on SQLite too: django-q2 closes stale ones around every task and dequeue, and a
# fresh SQLite connection per job cost a 200-photo import 7 % of its time.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{FACES_DATA_DIR / 'faces.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so worker processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(FACES_DATA_DIR / "test-faces.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    # A file cache is shared by the web and worker processes of one machine, so
    # rate limits and queue statistics agree between them. It holds search
    # photos for 15 minutes: room for thousands, expired ones culled first.
    CACHES = {
        "default": {
            "BACKEND": "faces_site.cache.FileCache",
            "LOCATION": str(FACES_DATA_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": env_int("FACES_FILE_CACHE_MAX_ENTRIES", 5000)},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: whitenoise serves them, hashed and compressed after collectstatic.
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(FACES_DATA_DIR / "staticfiles")))

# Media: never served from a public URL. Local files live under FACES_DATA_DIR
# and go out through an owner-checked view; S3 objects are private and linked
# with short-lived presigned URLs.
MEDIA_ROOT = FACES_DATA_DIR / "media"
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME")
AWS_REGION = env("AWS_REGION", "us-east-1")
AWS_ENDPOINT_URL = env("AWS_ENDPOINT_URL") or None
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "region_name": AWS_REGION,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL") or AWS_ENDPOINT_URL,
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 300),
            # botocore presigns S3 with deprecated SigV2 unless told otherwise;
            # buckets created since 2020 accept only SigV4 URLs.
            "signature_version": "s3v4",
            "file_overwrite": True,
            "object_parameters": {"CacheControl": "private, max-age=300"},
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": None},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 30 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("FACES_MAX_FILES_PER_IMPORT", 500)

# Email: console by default, SMTP when EMAIL_HOST is set.
EMAIL_HOST = env("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Faces <faces@localhost>")

# django-allauth: email + password accounts; Instagram as a social provider.
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
# Mandatory verification is what lets allauth hide whether an address is
# registered: signing up with a new or a known address both end on "check your
# e-mail" (the known one gets a "you already have an account" mail instead).
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
# Instagram sign-ups keep refusing a registered address (they proved an Instagram account).
SOCIALACCOUNT_EMAIL_VERIFICATION = env("SOCIALACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = None
# Sessions name their user, so deleting an account or changing a password ends them all.
SESSION_ENGINE = "accounts.sessions"
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
SOCIALACCOUNT_STORE_TOKENS = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = {
    "instagram_login": {
        "APPS": [
            {
                "client_id": env("INSTAGRAM_CLIENT_ID"),
                "secret": env("INSTAGRAM_CLIENT_SECRET"),
            }
        ]
        if env("INSTAGRAM_CLIENT_ID")
        else [],
        "SCOPE": ["instagram_business_basic"],
    }
}
INSTAGRAM_AUTH_URL = env("INSTAGRAM_AUTH_URL", "https://www.instagram.com")
INSTAGRAM_API_URL = env("INSTAGRAM_API_URL", "https://api.instagram.com")
INSTAGRAM_GRAPH_URL = env("INSTAGRAM_GRAPH_URL", "https://graph.instagram.com")

# Security. HSTS is opt-in because it outlives a bad deploy.
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG and env_bool("HTTPS", False))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Behind a reverse proxy every request comes from the proxy's address: trust
# its X-Forwarded-Proto, and take the client address (allauth's login, sign-up
# and reset throttles, the address kept with a consent record) from the
# X-Forwarded-For entry the last PROXY_COUNT proxies added, or from the single
# header PROXY_CLIENT_IP_HEADER names (X-Real-IP, CF-Connecting-IP). Off, both
# headers are ignored, so a client cannot pick its own address.
BEHIND_PROXY = env_bool("BEHIND_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("PROXY_COUNT", 1) if BEHIND_PROXY else 0
ALLAUTH_TRUSTED_CLIENT_IP_HEADER = (env("PROXY_CLIENT_IP_HEADER") or None) if BEHIND_PROXY else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Allows the camera page (getUserMedia, blob: and data: previews) and nothing
# from other origins; ``{instagram}`` becomes INSTAGRAM_AUTH_URL's origin, where
# the "Connect Instagram" form is redirected.
FACES_CSP = (
    "default-src 'self'; img-src 'self' data: blob: https:; media-src 'self' blob: mediastream:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self' {instagram}; base-uri 'self'; object-src 'none'"
)
FACES_PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=()"

# django-q2: ORM broker on the same database, or Redis when REDIS_URL is set.
# A task whose worker died is delivered again after Q_RETRY seconds; jobs are
# idempotent, so a second delivery is harmless.
Q_CLUSTER = {
    "name": "faces",
    "workers": env_int("FACES_WORKERS", default_workers()),
    # A worker is replaced after this many tasks (bounds leaks); each start loads
    # the face models (~0.35 s), so not too often: 1000 index jobs are ~40 s of work.
    "recycle": 1000,
    "timeout": env_int("FACES_Q_TIMEOUT", 300),
    "retry": env_int("FACES_Q_RETRY", 360),
    "max_attempts": env_int("FACES_Q_MAX_ATTEMPTS", 5),
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "poll": 0.2,
    "bulk": 1,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Faces.
FACES_ENGINE = env("FACES_ENGINE", "local")
FACES_DEFAULT_THRESHOLD = float(env("FACES_DEFAULT_THRESHOLD", "80"))
FACES_MAX_UPLOAD_BYTES = env_int("FACES_MAX_UPLOAD_BYTES", 25 * 1024 * 1024)
FACES_MAX_IMAGE_PIXELS = env_int("FACES_MAX_IMAGE_PIXELS", 80_000_000)
# A search photo is decoded in the web process: at most this many pixels are
# decoded (a JPEG counts at the reduced scale it is decoded at), which bounds
# one search request's memory (README, "Limits").
FACES_MAX_SEARCH_PIXELS = env_int("FACES_MAX_SEARCH_PIXELS", 16_000_000)
FACES_CONSENT_VERSION = "2026-12-01"  # support staff can open photo previews
FACES_REKOGNITION_PREFIX = env("FACES_REKOGNITION_PREFIX", "faces")
FACES_REKOGNITION_TPS = float(env("FACES_REKOGNITION_TPS", "5"))
FACES_REKOGNITION_MAX_ATTEMPTS = env_int("FACES_REKOGNITION_MAX_ATTEMPTS", 5)
# Local engine: threads per process (1 keeps web and worker from fighting over
# cores) and the per-process cache of tenants' embedding matrices.
FACES_ENGINE_THREADS = env_int("FACES_ENGINE_THREADS", 1)
FACES_LOCAL_CACHE_MB = env_int("FACES_LOCAL_CACHE_MB", 1024)
FACES_MAX_EXPORT_BYTES = env_int("FACES_MAX_EXPORT_BYTES", 4 * 1024**3)
FACES_MAX_EXPORT_MEMBERS = env_int("FACES_MAX_EXPORT_MEMBERS", 50_000)
# An export's posts JSON is parsed in the web process (on upload) and the worker
# (crawl): unpacked size per member and in all, checked before reading, and the
# memory parsing may take, estimated before parsing (10,000 posts: 5.4 MiB, 63 MB estimated, 23 real).
FACES_MAX_EXPORT_JSON_MEMBER_BYTES = env_int("FACES_MAX_EXPORT_JSON_MEMBER_BYTES", 32 * 1024**2)
FACES_MAX_EXPORT_JSON_BYTES = env_int("FACES_MAX_EXPORT_JSON_BYTES", 64 * 1024**2)
FACES_EXPORT_JSON_BUDGET_BYTES = env_int("FACES_EXPORT_JSON_BUDGET_BYTES", 256 * 1024**2)
# Face data of accounts inactive (no login) for this many days is deleted by a
# daily job; 0 keeps it until the user deletes it.
FACES_RETENTION_DAYS = env_int("FACES_RETENTION_DAYS", 0)
# Per-user limits on the expensive views: "N/period" with period s, m, h or d
# (optionally a multiple, e.g. "100/5m"). Empty disables a scope.
FACES_RATE_LIMITS = {
    "search": env("FACES_RATE_LIMIT_SEARCH", "30/m"),
    "import": env("FACES_RATE_LIMIT_IMPORT", "10/h"),
}
# Index jobs: posts per queued job, photo downloads in flight per job, and the
# seconds one photo may take to download (a hanging CDN fails that photo alone).
FACES_INDEX_BATCH = env_int("FACES_INDEX_BATCH", 16)
FACES_FETCH_CONCURRENCY = env_int("FACES_FETCH_CONCURRENCY", 16)
FACES_FETCH_TIMEOUT = float(env("FACES_FETCH_TIMEOUT", "30"))
# On a Redis broker a starting worker requeues pending posts enqueued this long ago.
FACES_RESUME_STALE_SECONDS = float(env("FACES_RESUME_STALE_SECONDS", "60"))

LOGGING = logging_config(env("LOG_LEVEL", "INFO"))

# Videos and reels: frames sampled per second, and the limits of one video.
FACES_VIDEO_SAMPLE_SECONDS = float(env("FACES_VIDEO_SAMPLE_SECONDS", "1.0"))
FACES_VIDEO_MAX_SECONDS = float(env("FACES_VIDEO_MAX_SECONDS", "900"))  # read up to 15 minutes
FACES_VIDEO_MAX_FRAMES = env_int("FACES_VIDEO_MAX_FRAMES", 600)
FACES_VIDEO_TIME_BUDGET = float(env("FACES_VIDEO_TIME_BUDGET", "120"))  # seconds of decoding per video
FACES_VIDEO_MAX_BYTES = env_int("FACES_VIDEO_MAX_BYTES", 200 * 1024 * 1024)
