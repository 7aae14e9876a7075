"""Settings come from the environment and fail loudly, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp.env import check_broker_url, env_bool, env_int, env_secret, parse_database_url

REPO = Path(__file__).resolve().parents[2]


def test_it_parses_a_postgres_url_with_an_escaped_password() -> None:
    db = parse_database_url("postgres://psl:p%40ss@db.internal:6543/lab?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    parts = (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"])
    assert parts == ("psl", "p@ss", "db.internal", "6543", "lab")
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_it_parses_an_absolute_sqlite_url_and_turns_on_wal() -> None:
    db = parse_database_url("sqlite:////srv/psl/db.sqlite3")
    assert db["NAME"] == "/srv/psl/db.sqlite3"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]


@pytest.mark.parametrize("url", ["nonsense", "mysql://x@y/z", "postgres://host-without-db", "sqlite://"])
def test_it_rejects_a_malformed_database_url_naming_the_variable(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse_database_url(url)


def test_it_rejects_a_broker_url_of_an_unknown_scheme() -> None:
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL"):
        check_broker_url("http://localhost:6379")


def test_it_reads_booleans_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSL_FLAG", "yes")
    assert env_bool("PSL_FLAG") is True
    monkeypatch.setenv("PSL_FLAG", "off")
    assert env_bool("PSL_FLAG", True) is False
    monkeypatch.setenv("PSL_FLAG", "")  # compose passes unset variables as empty strings
    assert env_bool("PSL_FLAG", True) is True
    monkeypatch.setenv("PSL_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="PSL_FLAG"):
        env_bool("PSL_FLAG")


def test_it_reads_integers_with_a_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSL_N", "12")
    assert env_int("PSL_N", 3) == 12
    monkeypatch.setenv("PSL_N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="PSL_N must be an integer"):
        env_int("PSL_N", 3)
    monkeypatch.setenv("PSL_N", "-1")
    with pytest.raises(ImproperlyConfigured, match="PSL_N must be ≥ 0"):
        env_int("PSL_N", 3, minimum=0)


def test_it_reads_a_secret_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("PSL_KEY_FILE", str(secret))
    assert env_secret("PSL_KEY") == "s3cret"
    monkeypatch.setenv("PSL_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="PSL_KEY_FILE"):
        env_secret("PSL_KEY")


def _check(env_overrides: dict[str, str], *args: str, command: str = "check") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PSL_", "SECRET_KEY", "DEBUG", "DJANGO_"))}
    env.update({"PSL_VAR_DIR": str(REPO / "var" / "test"), "DJANGO_SETTINGS_MODULE": "webapp.settings"})
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", command, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_requires_a_secret_key_outside_demo_and_debug() -> None:
    out = _check({})
    assert out.returncode != 0
    assert "SECRET_KEY is required" in out.stderr


def test_it_passes_the_deploy_checks_with_production_like_variables() -> None:
    out = _check(
        {
            "SECRET_KEY": "k" * 20 + "-Zq8#x1!fP0vR7sLm2@bW9yT4nC6hJ3dE5gA",
            "ALLOWED_HOSTS": "lab.example.com",
            "SECURE_SSL_REDIRECT": "1",
            "SECURE_HSTS_SECONDS": "31536000",
            "BEHIND_HTTPS_PROXY": "1",
        },
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert out.returncode == 0, out.stdout + out.stderr


STRONG_KEY = "k" * 20 + "-Zq8#x1!fP0vR7sLm2@bW9yT4nC6hJ3dE5gA"


def example_variables(tmp_path: Path) -> dict[str, str]:
    """docker/.env.example's production values (empty ones left to their defaults), folders moved under tmp_path."""
    values = {}
    for line in (REPO / "docker" / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and value:
            values[name] = str(tmp_path / value.lstrip("/")) if value.startswith("/data") else value
    return values


def test_the_example_files_placeholder_secret_key_is_refused_at_start_up(tmp_path: Path) -> None:
    env = example_variables(tmp_path)
    assert env["SECRET_KEY"] == "change-me-to-a-long-random-string"
    out = _check(env)
    assert out.returncode != 0
    assert "SECRET_KEY is a placeholder" in out.stderr


@pytest.mark.parametrize(
    "key", ["short-but-random-Zq8#x1!fP0vR7", "k" * 64, "django-insecure-" + "Zq8#x1!fP0vR7sLm2@bW9yT4nC6hJ3dE5gA"]
)
def test_a_short_or_regular_secret_key_is_refused_unless_debug(key: str) -> None:
    out = _check({"SECRET_KEY": key})
    assert out.returncode != 0 and "SECRET_KEY is" in out.stderr
    assert _check({"SECRET_KEY": key, "DEBUG": "1"}).returncode == 0


def test_the_production_example_passes_the_deploy_checks_with_a_real_key(tmp_path: Path) -> None:
    env = example_variables(tmp_path) | {"SECRET_KEY": STRONG_KEY}
    out = _check(env, "--deploy", "--fail-level", "WARNING")
    assert out.returncode == 0, out.stdout + out.stderr


def test_without_debug_https_is_the_default(tmp_path: Path) -> None:
    env = {"SECRET_KEY": STRONG_KEY}
    out = _check(env, "--deploy", "--fail-level", "WARNING")  # nothing set by hand: no HSTS/SSL warnings
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_demo_signs_with_a_random_key_kept_in_its_var_folder(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {"PSL_DEMO": "1", "PSL_VAR_DIR": str(var)}
    printed = [
        _check(env, "-c", "from django.conf import settings; print(settings.SECRET_KEY)", command="shell")
        for _ in range(2)
    ]
    keys = {p.stdout.strip() for p in printed}
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert (var / "demo-secret-key").stat().st_mode & 0o077 == 0


def test_it_rejects_an_unknown_final_evaluation_benchmark_naming_the_variable() -> None:
    out = _check({"PSL_DEMO": "1", "PSL_EVAL_FINAL_BENCHMARKS": "arith,math5000"})
    assert out.returncode != 0
    assert "PSL_EVAL_FINAL_BENCHMARKS: unknown benchmark(s) math5000" in out.stderr


def test_the_app_migrates_and_starts_with_sqlite_and_a_redis_broker_in_a_fresh_var_folder(tmp_path: Path) -> None:
    var = tmp_path / "fresh" / "var"  # does not exist yet: the settings create it whatever the broker
    env = {"PSL_DEMO": "1", "PSL_VAR_DIR": str(var), "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    env["DATABASE_URL"] = ""  # the default: SQLite under PSL_VAR_DIR
    migrated = _check(env, "--no-input", command="migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert (var / "db.sqlite3").is_file()
    assert not (var / "broker").exists()  # no filesystem broker folders with a Redis broker
    checked = _check(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
