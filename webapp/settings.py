"""Django settings, read from the environment (docker/.env.example lists every variable).

With nothing configured the product runs on embedded defaults: SQLite (WAL) and a Celery
broker on the filesystem, both under ``var/``. Set DATABASE_URL=postgres://… and
CELERY_BROKER_URL=redis://… for the production path.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from trainer.data.benchmarks import BENCHMARK_NAMES
from trainer.planner import pool_gpus
from webapp.env import (
    check_broker_url,
    check_secret_key,
    demo_secret_key,
    env_bool,
    env_int,
    env_list,
    env_secret,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PSL_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the default SQLite database lives here, whatever the broker

# PSL_DEMO relaxes only what a local demo needs (a generated SECRET_KEY); it never turns DEBUG on.
DEMO = env_bool("PSL_DEMO", False)
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not (DEMO or DEBUG):
        raise ImproperlyConfigured("SECRET_KEY is required (or SECRET_KEY_FILE); set PSL_DEMO=1 for a local demo")
    SECRET_KEY = demo_secret_key(VAR_DIR / "demo-secret-key")
elif not DEBUG:
    check_secret_key(SECRET_KEY)  # a placeholder copied from the example, or a short key, never signs sessions

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "webapp",
]

MIDDLEWARE = [
    "webapp.http.health.health_middleware",  # first: container healthchecks skip host checks and redirects
    "webapp.http.api_errors.api_json_errors",  # every error under /api/ as JSON, the inner layers' too
    "django.middleware.security.SecurityMiddleware",
    "webapp.http.security.security_headers",  # Content-Security-Policy, Permissions-Policy
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webapp.http.navigation.remember_project",  # the project the navigation of global pages links to
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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
                "webapp.http.navigation.nav_project",
            ],
        },
    },
]

DATABASES = {"default": parse_database_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in throttling (django-axes): after PSL_LOGIN_FAILURE_LIMIT failed sign-ins for one username, or
# from one client address, that username or address is locked out for PSL_LOGIN_LOCKOUT_MINUTES after
# its last failure (a success resets its count). Attempts live in the database, shared by all processes.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("PSL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PSL_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account and per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webapp.views.accounts.locked_out"
AXES_CLIENT_IP_CALLABLE = "webapp.views.accounts.client_address"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# plotly.js is served from the installed plotly package, so no JS is vendored or downloaded.
try:
    import plotly

    STATICFILES_DIRS.append(("vendor/plotly", Path(plotly.__file__).parent / "package_data"))  # type: ignore[arg-type]
except ImportError:  # pragma: no cover - plotly is in requirements.txt
    pass
# Serve static files straight from the finders: no collectstatic step for the demo.
WHITENOISE_USE_FINDERS = True

# Production hardening, on unless DEBUG or the demo (SECURE_COOKIES): HTTPS-only cookies, a redirect of
# plain HTTP to HTTPS and HSTS for a year; each can be set on its own.
SECURE_COOKIES = env_bool("SECURE_COOKIES", not (DEBUG or DEMO))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SECURE_COOKIES)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_HTTPS_PROXY", False) else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SECURE_COOKIES else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Served on every response by webapp.http.security: scripts from this origin only (no inline script, no eval:
# plotly.js and every page script are static files), styles from this origin only (no inline <style>, no style
# attribute: templates use CSS classes, scripts set styles through the CSSOM, which the policy allows; plotly.js
# inserts its rules into the empty sheet of templates/webapp/partials/plotly_styles.html instead of a <style> of
# its own), fonts, images and data from here, no plugins, no framing, forms post here only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS")

# --- Celery (every option is a CELERY_* setting; see webapp/celery.py) ---------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = check_broker_url(env_str("CELERY_BROKER_URL", "filesystem://"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: the broker is a folder, so the demo needs no server.
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis: a GPU run can be hours long; redelivery must not happen while it is still running.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 43200, minimum=60)}
CELERY_RESULT_BACKEND = None  # run state lives in our own tables, not in Celery results
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Long GPU tasks: one at a time per worker process, so a queued run is never stuck behind another.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env_str("PSL_DEFAULT_QUEUE", "cpu")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# No beat schedule: periodic jobs (the lost-run sweep, dispatching) run in `manage.py dispatcher`,
# which needs no live worker, and in every worker's heartbeat thread.

# --- Product settings -----------------------------------------------------------------------------
# Queues a run can target (one per GPU pool). The run form offers exactly these.
PSL_QUEUES = env_list("PSL_QUEUES", "cpu,gpu-a100,gpu-h100")
# GPU type and GPUs per host of each GPU pool, for the memory planner when no live worker of the
# pool has reported its GPUs yet (trainer.planner.GPU_TYPES): queue=gpu_type:gpus_per_host,…
try:
    PSL_POOLS = pool_gpus(env_str("PSL_POOLS", "gpu-a100=a100-80gb:8,gpu-h100=h100-80gb:8"))
except ValueError as _exc:
    raise ImproperlyConfigured(str(_exc)) from None
PSL_RUNS_DIR = Path(env_str("PSL_RUNS_DIR", str(VAR_DIR / "runs")))
PSL_HEARTBEAT_SECONDS = env_int("PSL_HEARTBEAT_SECONDS", 10, minimum=1)
# A running run whose heartbeat is older than this is marked lost by the periodic sweep (a running
# evaluation is marked failed, with the reason).
PSL_LOST_AFTER_SECONDS = env_int("PSL_LOST_AFTER_SECONDS", 90, minimum=5)
# The dispatcher (manage.py dispatcher; every worker's heartbeat too) sweeps lost runs and sends
# the messages missing for queued runs this often: the bound on both after a worker or broker loss.
PSL_DISPATCH_SECONDS = env_int("PSL_DISPATCH_SECONDS", 10, minimum=1)
PSL_CANCEL_GRACE_SECONDS = env_int("PSL_CANCEL_GRACE_SECONDS", 5, minimum=1)
# A trainer that acknowledged a cancel may finish its current update for this long before SIGTERM.
PSL_CANCEL_MAX_SECONDS = env_int("PSL_CANCEL_MAX_SECONDS", 300, minimum=1)
# The trainer's captured stdout/stderr (webapp.worker.run_output): output lines kept per attempt in the
# database (the oldest are dropped beyond it), and the size at which the attempt's log file rotates.
PSL_LOG_MAX_LINES = env_int("PSL_LOG_MAX_LINES", 5000, minimum=10)
PSL_LOG_FILE_MAX_BYTES = env_int("PSL_LOG_FILE_MAX_BYTES", 32 << 20, minimum=1024)
# Seconds between two samples of a running trainer's CPU, memory and GPUs (webapp.worker.system_metrics).
PSL_SYSTEM_METRICS_SECONDS = env_int("PSL_SYSTEM_METRICS_SECONDS", 5, minimum=1)
PSL_DATA_DIR = Path(env_str("PSL_DATA_DIR", str(VAR_DIR / "data")))
# What a run may name besides built-ins (trainer.references): data:<name> under the team's data folder,
# then PSL_DATA_DIR; local:<name> under the team's models folder, then PSL_MODELS_DIR. Never server paths.
PSL_MODELS_DIR = Path(env_str("PSL_MODELS_DIR", str(VAR_DIR / "models")))
# One folder per team: PSL_TEAMS_DIR/<team slug>/data and …/models (seen by that team's runs only).
PSL_TEAMS_DIR = Path(env_str("PSL_TEAMS_DIR", str(VAR_DIR / "teams")))
# Largest dataset file a team may upload (webapp.datasets); its rows are stored gzip-compressed in the database.
PSL_DATASET_MAX_MB = env_int("PSL_DATASET_MAX_MB", 100, minimum=1)
for _inner, _outer in itertools.product(("PSL_TEAMS_DIR", "PSL_RUNS_DIR"), ("PSL_DATA_DIR", "PSL_MODELS_DIR")):
    # A team folder or the run folders inside a shared root would let any team name them.
    if globals()[_inner].resolve().is_relative_to(globals()[_outer].resolve()):
        raise ImproperlyConfigured(f"{_inner} must not lie inside {_outer} (every team can read {_outer})")
# Evaluation of a succeeded run's last checkpoint (both modes) on the run's own task, or on these benchmarks.
PSL_EVAL_AFTER_TRAINING = env_bool("PSL_EVAL_AFTER_TRAINING", True)
_final_benchmarks = env_list("PSL_EVAL_FINAL_BENCHMARKS")
if unknown := sorted(set(_final_benchmarks) - set(BENCHMARK_NAMES)):
    raise ImproperlyConfigured(
        f"PSL_EVAL_FINAL_BENCHMARKS: unknown benchmark(s) {', '.join(unknown)}; "
        f"choose from {', '.join(BENCHMARK_NAMES)}"
    )
PSL_EVAL_FINAL = {
    "benchmarks": _final_benchmarks or None,
    "k": env_int("PSL_EVAL_FINAL_K", 4, minimum=1),
    "limit": env_int("PSL_EVAL_FINAL_LIMIT", 64, minimum=1),
    "include_base": env_bool("PSL_EVAL_FINAL_INCLUDE_BASE", False),
}
# An evaluator child process running longer than this is killed and its evaluations fail.
PSL_EVAL_TIMEOUT_SECONDS = env_int("PSL_EVAL_TIMEOUT_SECONDS", 12 * 3600, minimum=1)

WANDB_API_KEY = env_secret("WANDB_API_KEY")
WANDB_PROJECT = env_str("WANDB_PROJECT", "policy-split-lab")
WANDB_ENTITY = env_str("WANDB_ENTITY")
# Without an API key W&B can only work offline (wandb.init fails at once otherwise).
WANDB_MODE = env_str("WANDB_MODE", "online" if WANDB_API_KEY else "offline")
if WANDB_MODE not in ("online", "offline", "disabled"):
    raise ImproperlyConfigured(f"WANDB_MODE must be online, offline or disabled, got {WANDB_MODE!r}")

# Mail for team invitations (the admin always sees the link too). Without EMAIL_HOST no mail is sent.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10  # seconds: an unreachable mail server must not hold the invite page
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Policy Split Lab <noreply@localhost>")

JUDGE_API_URL = env_str("JUDGE_API_URL")
JUDGE_API_KEY = env_secret("JUDGE_API_KEY")
JUDGE_MODEL = env_str("JUDGE_MODEL", "gpt-4o")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
