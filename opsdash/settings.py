"""opsdash settings: one file, every value from the environment (see .env.example).

The helpers below fail loudly on a malformed value instead of silently using a default.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or CIDR networks; "none" for an empty list."""
    items = env_list(name, default)
    if [i.lower() for i in items] == ["none"]:
        return []
    try:
        return [ipaddress.ip_network(item, strict=False) for item in items]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be comma-separated addresses or networks (or none): {exc}") from None


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env_str(name) or default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_group_mapping(name: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``group=role[:branch,branch];group=role``: an identity provider's group -> (our role, the
    branches it may see; none: every branch)."""
    out = {}
    for item in (env_str(name) or "").split(";"):
        if not item.strip():
            continue
        group, sep, target = item.partition("=")
        role, _, branches = target.partition(":")
        role = role.strip()
        if not sep or not group.strip() or role not in ("manager", "operator", "auditor"):
            raise ImproperlyConfigured(f"{name}: {item.strip()!r} is not group=manager|operator|auditor[:branch,...]")
        out[group.strip()] = (role, tuple(b.strip() for b in branches.split(",") if b.strip()))
    return out


CHANNEL_EVENTS = ("problem", "recovered", "gone", "verify_overdue", "host_stale", "host_back", "escalated", "digest")
DEFAULT_CHANNEL_EVENTS = ("problem", "recovered", "gone", "verify_overdue", "host_stale", "host_back")


def env_channels(name: str) -> tuple[dict, ...]:
    """A JSON list of alert channels: ``{"name", "url"}`` (an Apprise URL) and the route:
    ``branches`` (default every branch), ``min_severity`` ("warning" or "critical"), ``events``
    (of CHANNEL_EVENTS; default all but "escalated" and "digest"). The URLs hold secrets: they
    are never shown on a page or written to a log; a channel is named by its name."""
    raw = env_str(name) or ""
    try:
        items = json.loads(raw) if raw.strip() else []
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ImproperlyConfigured(f"{name} must be a JSON list of channels")
    out, names = [], set()
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or "://" not in item["url"]:
            raise ImproperlyConfigured(f'{where} needs an Apprise URL ("url": "scheme://...")')
        label = item.get("name")
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,50}", label) or label in names:
            raise ImproperlyConfigured(f'{where} needs a unique "name" of letters, digits, . _ - (50 at most)')
        unknown = set(item) - {"name", "url", "branches", "min_severity", "events"}
        branches, events = item.get("branches", []), item.get("events", list(DEFAULT_CHANNEL_EVENTS))
        if unknown or not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
            raise ImproperlyConfigured(f"{where} ({label}): unknown keys {sorted(unknown)} or branches not a list")
        if item.get("min_severity", "warning") not in ("warning", "critical"):
            raise ImproperlyConfigured(f"{where} ({label}): min_severity is warning or critical")
        if not isinstance(events, list) or not events or set(events) - set(CHANNEL_EVENTS):
            raise ImproperlyConfigured(f"{where} ({label}): events are some of {', '.join(CHANNEL_EVENTS)}")
        names.add(label)
        out.append(
            {
                "name": label,
                "url": item["url"],
                "branches": tuple(branches),
                "min_severity": item.get("min_severity", "warning"),
                "events": tuple(events),
            }
        )
    return tuple(out)


def env_http_url(name: str) -> str:
    """An http(s) URL or "" (unset); anything else (file:, ftp:, a typo) is refused."""
    value = env_str(name) or ""
    if value and urlsplit(value).scheme not in ("http", "https"):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _persisted_secret_key(path: Path) -> str:
    """The embedded default's key: generated once, kept in var/secret_key (mode 0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


DEBUG = env_bool("DJANGO_DEBUG", False)

_database_url = env_str("DATABASE_URL")
_secret_key = env_str("DJANGO_SECRET_KEY")
if _secret_key is None:
    if _database_url is not None and not DEBUG:
        # A shared database means several web hosts: they need one key from the environment.
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DATABASE_URL is set and DEBUG is off")
    _secret_key = _persisted_secret_key(VAR_DIR / "secret_key")
SECRET_KEY = _secret_key

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# The Mishkah BRANCHES_DIR this dashboard watches. Unset: pages work, /healthz answers 503.
_data_root = env_str("OPSDASH_DATA_ROOT")
OPSDASH_DATA_ROOT = Path(_data_root).expanduser() if _data_root else None
# Part of every module's identity, so that several store hosts can share one database.
OPSDASH_HOST_NAME = env_str("OPSDASH_HOST_NAME") or socket.gethostname()
# Temp files of an interrupted atomic write younger than this are a writer at work, not orphans.
OPSDASH_TEMP_GRACE_SECONDS = env_int("OPSDASH_TEMP_GRACE_SECONDS", 3600)
# How often the overview refreshes its table (seconds; 0 turns the refresh off).
OPSDASH_REFRESH_SECONDS = env_int("OPSDASH_REFRESH_SECONDS", 30)
OPSDASH_PAGE_SIZE = env_int("OPSDASH_PAGE_SIZE", 50, minimum=1)
# Where archived backups go (copied, fsynced and verified before the original is removed).
OPSDASH_ARCHIVE_ROOT = Path(env_str("OPSDASH_ARCHIVE_ROOT") or VAR_DIR / "archive").expanduser()
# Archived backups up to this size are also kept in the database, so any host can serve them.
OPSDASH_BLOB_MAX_BYTES = env_int("OPSDASH_BLOB_MAX_BYTES", 64 * 1024 * 1024)
# A running job whose heartbeat is older than this was interrupted (its worker stopped).
# Reverse proxies in front of the dashboard whose X-Forwarded-For is believed (addresses or
# networks; default none: the header is ignored and the client is REMOTE_ADDR).
OPSDASH_TRUSTED_PROXIES = env_networks("OPSDASH_TRUSTED_PROXIES", ["none"])
_behind_tls_proxy = env_bool("DJANGO_BEHIND_TLS_PROXY", False)
# Behind a proxy every request comes from the proxy's address: /metrics then wants its token.
OPSDASH_BEHIND_PROXY = _behind_tls_proxy or bool(OPSDASH_TRUSTED_PROXIES)
# /metrics: a bearer token, or scrapes from these addresses/networks (comma-separated).
OPSDASH_METRICS_TOKEN = env_str("OPSDASH_METRICS_TOKEN") or ""
# "none": the token only. A request that came through a reverse proxy needs the token anyway.
OPSDASH_METRICS_ALLOW = env_networks("OPSDASH_METRICS_ALLOW", ["127.0.0.1", "::1"])
# Alerts on status changes: a webhook (JSON POST, optional HMAC-SHA256 signature) and emails.
OPSDASH_ALERT_WEBHOOK_URL = env_http_url("OPSDASH_ALERT_WEBHOOK_URL")
OPSDASH_ALERT_WEBHOOK_SECRET = env_str("OPSDASH_ALERT_WEBHOOK_SECRET") or ""
OPSDASH_ALERT_EMAILS = env_list("OPSDASH_ALERT_EMAILS", [])
OPSDASH_ALERT_MAX_ATTEMPTS = env_int("OPSDASH_ALERT_MAX_ATTEMPTS", 8, minimum=1)
# Notification channels through Apprise, each with its route (see env_channels); the webhook and
# the email addresses above are channels too (every branch, every event but the escalation).
OPSDASH_ALERT_CHANNELS = env_channels("OPSDASH_ALERT_CHANNELS")
# Who gets the daily digest (`manage.py digest`) by email, besides the channels of its event.
OPSDASH_DIGEST_EMAILS = env_list("OPSDASH_DIGEST_EMAILS", [])
# A problem still unacknowledged this many minutes after its incident opened is sent once more,
# to the channels whose events include "escalated" (0: no escalation).
OPSDASH_ESCALATION_MINUTES = env_int("OPSDASH_ESCALATION_MINUTES", 0, minimum=0)
# The dashboard's address as people reach it, for links in alerts (e.g. https://opsdash.example.com).
OPSDASH_PUBLIC_URL = env_http_url("OPSDASH_PUBLIC_URL")
_email_backend = env_str("OPSDASH_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
_smtp_options = {
    "host": env_str("EMAIL_HOST", "localhost"),
    "port": env_int("EMAIL_PORT", 25),
    "username": env_str("EMAIL_HOST_USER", ""),
    "password": env_str("EMAIL_HOST_PASSWORD", ""),
    "use_tls": env_bool("EMAIL_USE_TLS", False),
    "timeout": 10,
}
MAILERS = {
    "default": {
        "BACKEND": _email_backend,
        "OPTIONS": _smtp_options if _email_backend.endswith(".smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "opsdash@localhost")
# Login throttling: this many failed logins from one address (or for one user name) within the
# window, and further attempts get 429 until the window has passed.
OPSDASH_LOGIN_MAX_FAILURES = env_int("OPSDASH_LOGIN_MAX_FAILURES", 10, minimum=1)
OPSDASH_LOGIN_WINDOW_SECONDS = env_int("OPSDASH_LOGIN_WINDOW_SECONDS", 900, minimum=1)
# Seconds between two passes of a scanner (`manage.py agent`, `scan --loop` of scripts/serve).
OPSDASH_SCAN_INTERVAL = env_int("OPSDASH_SCAN_INTERVAL", 60, minimum=1)
# A host whose scanner has not reported for this long shows its modules as stale, not as current.
# Default: three intervals (a pass may be late once or twice without raising an alarm). Shorter
# than one interval, a host would be shown stale between two of its passes: refused.
OPSDASH_STALE_SECONDS = env_int("OPSDASH_STALE_SECONDS", 3 * OPSDASH_SCAN_INTERVAL, minimum=1)
if OPSDASH_STALE_SECONDS < OPSDASH_SCAN_INTERVAL:
    raise ImproperlyConfigured(
        f"OPSDASH_STALE_SECONDS ({OPSDASH_STALE_SECONDS}) must not be shorter than OPSDASH_SCAN_INTERVAL "
        f"({OPSDASH_SCAN_INTERVAL}): every host would be shown stale between two of its passes"
    )
# Archived backups are kept this many days (0: forever), except those an operator pinned; the
# branch action "purge archive" removes older ones, each only once its copy is verified.
OPSDASH_ARCHIVE_KEEP_DAYS = env_int("OPSDASH_ARCHIVE_KEEP_DAYS", 0, minimum=0)
OPSDASH_JOB_STALE_SECONDS = env_int("OPSDASH_JOB_STALE_SECONDS", 60, minimum=10)
# The event browser: the payload fields (dotted paths such as record.totalDue) that people
# without opsdash.view_payloads (managers) see and search beside the envelope; default none.
OPSDASH_MANAGER_VISIBLE_FIELDS = tuple(env_list("OPSDASH_MANAGER_VISIBLE_FIELDS", []))
# The scrub: every log is read again in full at least once every OPSDASH_SCRUB_DAYS days (0:
# every pass reads everything in full), spread over the passes, oldest verified first, reading
# at most OPSDASH_SCRUB_BYTES_PER_PASS bytes of logs in full per pass (a log larger than that is
# read alone in its pass). A module not read in full for a day past its window raises one alert.
OPSDASH_SCRUB_DAYS = env_int("OPSDASH_SCRUB_DAYS", 7, minimum=0)
OPSDASH_SCRUB_BYTES_PER_PASS = env_int("OPSDASH_SCRUB_BYTES_PER_PASS", 256 * 1024 * 1024, minimum=1024 * 1024)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks_db",
    "opsdash",
    # Login (local passwords and single sign-on) and its second factor: django-allauth.
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
]

# Jobs go through Django's task framework with a database-backed queue, one queue per host.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "opsdash.middleware.RejectNulBytesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the switcher's cookie, else the browser's Accept-Language, else English.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "opsdash.middleware.ApiTokenMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "opsdash.middleware.RequireTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "opsdash.root_urls"
WSGI_APPLICATION = "opsdash.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _private_sqlite(var: Path) -> Path:
    """The embedded default's database, readable by this user only from the first run: var/ is
    0700 and the database 0600 (SQLite gives its -wal and -shm files the database's mode). It
    holds the sessions, the password hashes and the archived backups' copies."""
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = var / "opsdash.sqlite3"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for item in (var, path, var / "opsdash.sqlite3-wal", var / "opsdash.sqlite3-shm"):
        try:
            st = item.stat()
        except FileNotFoundError:
            continue
        private = 0o700 if item == var else 0o600
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != private:
            item.chmod(private)  # an install from before this rule
    return path


if _database_url is None:
    _database_url = f"sqlite:///{_private_sqlite(VAR_DIR)}"
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The scanner and the web server write concurrently: WAL and a busy timeout avoid "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

# Run jobs in a thread of the web process (the embedded default: no extra process to start).
# On by default with SQLite, whatever DATABASE_URL says (SQLite means one machine); off by default
# with a shared database, where each store host runs `manage.py agent`.
OPSDASH_EMBEDDED_WORKER = env_bool(
    "OPSDASH_EMBEDDED_WORKER", DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
)

# The database as the cache: every web process and host shares it (the second factor's used
# codes and allauth's rate limits must hold across processes). Its table comes from a migration.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "opsdash_cache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# One backend: a password is checked once per attempt, whichever form it comes from (ours, the
# admin's), and none at all with OPSDASH_LOCAL_LOGIN=0 (opsdash.auth.PasswordBackend).
AUTHENTICATION_BACKENDS = ["opsdash.auth.PasswordBackend"]

# -- Login: local passwords, OpenID Connect single sign-on, two-factor (django-allauth) ---------
# Local user names and passwords; nobody signs up (accounts come from `manage.py user`, the
# admin, or the identity provider).
OPSDASH_LOCAL_LOGIN = env_bool("OPSDASH_LOCAL_LOGIN", True)
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "opsdash.auth.AccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False
# Logins are throttled by services.throttle (OPSDASH_LOGIN_*, per client and normalised user name,
# across processes); allauth's own login limits would add a second, different one. Its other
# limits (reauthentication, ...) stay.
ACCOUNT_RATE_LIMITS = {"login": None, "login_failed": None}
ACCOUNT_SESSION_REMEMBER = False
# OpenID Connect: an identity provider's issuer URL, client id and secret; its groups (the claim
# OPSDASH_OIDC_ROLE_CLAIM) map to roles and branches by OPSDASH_OIDC_GROUPS, e.g.
# "ops=operator;store-dar=manager:dar,maadi;audit=auditor" (a user in no mapped group gets no role).
OPSDASH_OIDC_ISSUER = env_http_url("OPSDASH_OIDC_ISSUER")
OPSDASH_OIDC_CLIENT_ID = env_str("OPSDASH_OIDC_CLIENT_ID", "") or ""
OPSDASH_OIDC_CLIENT_SECRET = env_str("OPSDASH_OIDC_CLIENT_SECRET", "") or ""
OPSDASH_OIDC_NAME = env_str("OPSDASH_OIDC_NAME", "single sign-on")
OPSDASH_OIDC_ROLE_CLAIM = env_str("OPSDASH_OIDC_ROLE_CLAIM", "groups")
OPSDASH_OIDC_GROUPS = env_group_mapping("OPSDASH_OIDC_GROUPS")
if OPSDASH_OIDC_ISSUER and not OPSDASH_OIDC_CLIENT_ID:
    raise ImproperlyConfigured("OPSDASH_OIDC_CLIENT_ID must be set with OPSDASH_OIDC_ISSUER")
if not OPSDASH_LOCAL_LOGIN and not OPSDASH_OIDC_ISSUER:
    raise ImproperlyConfigured("OPSDASH_LOCAL_LOGIN=0 needs OPSDASH_OIDC_ISSUER: nobody could log in")
SOCIALACCOUNT_ADAPTER = "opsdash.auth.SocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": "sso",
                "name": OPSDASH_OIDC_NAME,
                "client_id": OPSDASH_OIDC_CLIENT_ID,
                "secret": OPSDASH_OIDC_CLIENT_SECRET,
                "settings": {"server_url": OPSDASH_OIDC_ISSUER},
            }
        ]
        if OPSDASH_OIDC_ISSUER
        else [],
    }
}
# Two-factor login: TOTP (with recovery codes) and WebAuthn security keys / passkeys. Users of
# OPSDASH_REQUIRE_2FA (operators, all or none) must enroll at their next login before anything else.
OPSDASH_REQUIRE_2FA = env_choice("OPSDASH_REQUIRE_2FA", ("none", "operators", "all"), "none")
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = "opsdash"
LOGIN_REDIRECT_URL = "opsdash:module_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ar", "العربية")]
# Compiled catalogues (.mo) are committed: setup needs no gettext. Edit locale/*/LC_MESSAGES/django.po,
# then `manage.py compilemessages` (needs gettext) and commit both.
LOCALE_PATHS = [BASE_DIR / "locale"]
# Date formats per language (ISO-like in English, Arabic month names in Arabic).
FORMAT_MODULE_PATH = ["opsdash.formats"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = env_str("OPSDASH_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Served over HTTPS (directly or behind a TLS proxy): secure cookies and a redirect to https.
_https = env_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
LANGUAGE_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = _https
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes often speak plain HTTP on the inside
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
# Only with HSTS on: every subdomain HTTPS too, and eligible for the browsers' preload list.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SESSION_COOKIE_HTTPONLY = True
if _behind_tls_proxy:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Every script and style is a static file: no inline code, no CDN.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    # The single sign-on button's form is answered with a redirect to the identity provider.
    "form-action": [CSP.SELF, *([_origin(OPSDASH_OIDC_ISSUER)] if OPSDASH_OIDC_ISSUER else [])],
    "frame-ancestors": [CSP.NONE],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("OPSDASH_LOG_LEVEL", "INFO")},
}
