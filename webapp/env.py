"""Typed readers for environment variables that fail loudly instead of guessing.

Every reader raises ``ImproperlyConfigured`` naming the variable when its value is malformed,
so a typo in a deployment shows up at start-up rather than as odd behaviour later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from trainer.choices import parse_bool


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default (compose passes empty strings)."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    """Unset and empty both mean the default, as for the other readers (compose passes empty strings)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a boolean: {exc}") from None


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be ≥ {minimum}, got {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """Read ``NAME`` or, for Docker secrets, the contents of the file named by ``NAME_FILE``."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points to an unreadable file: {exc}") from None
    return os.environ.get(name, default)


# Words of the placeholders people copy from examples (docker/.env.example's "change-me-…").
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "placeholder", "example", "insecure", "not-secret")
SECRET_KEY_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"


def check_secret_key(key: str, name: str = "SECRET_KEY") -> str:
    """``key`` if it is fit to sign sessions: at least 50 characters, 5 distinct, no placeholder word,
    not Django's ``django-insecure-`` prefix (the rules of Django's security.W009, enforced at start-up)."""
    lowered = key.lower()
    if lowered.startswith("django-insecure-") or any(word in lowered for word in PLACEHOLDER_WORDS):
        raise ImproperlyConfigured(f"{name} is a placeholder, not a secret; {SECRET_KEY_HINT}")
    if len(key) < 50 or len(set(key)) < 5:
        raise ImproperlyConfigured(
            f"{name} is too short or too regular (need 50+ random characters); {SECRET_KEY_HINT}"
        )
    return key


def demo_secret_key(path: Path) -> str:
    """The demo's SECRET_KEY: random, made once and kept in ``path`` (mode 0600) so that sessions
    survive a restart; every process of the demo reads the same file."""
    import secrets

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        key = secrets.token_urlsafe(50)
        out.write(key)
    return key


def parse_database_url(url: str, *, name: str = "DATABASE_URL") -> dict[str, Any]:
    """Turn ``postgres://user:pass@host:5432/db`` or ``sqlite:///path`` into a Django DATABASES entry."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as in dj-database-url.
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ImproperlyConfigured(f"{name} must name a file, e.g. sqlite:///var/db.sqlite3; got {url!r}")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # WAL lets the web server read while a worker writes metrics; busy timeout rides out
            # short write locks instead of failing with "database is locked".
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
            },
        }
    if scheme in ("postgres", "postgresql", "pgsql"):
        dbname = parts.path.lstrip("/")
        if not dbname or not parts.hostname:
            raise ImproperlyConfigured(f"{name} must look like postgres://user:password@host:5432/dbname; got {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port: {url!r}") from None
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(dbname),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname,
            "PORT": str(port or 5432),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"{name} must start with postgres:// or sqlite:///, got {url!r}")


def check_broker_url(url: str, *, name: str = "CELERY_BROKER_URL") -> str:
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "filesystem", "memory", "amqp", "pyamqp"):
        raise ImproperlyConfigured(f"{name} must be a redis://, amqp:// or filesystem:// URL, got {url!r}")
    return url
