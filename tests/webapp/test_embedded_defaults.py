"""With nothing configured the product runs on SQLite (WAL) and a filesystem Celery broker.

These tests use real processes: one migrates, one runs a Celery worker, a third enqueues a task,
and the worker executes it. No PostgreSQL, no Redis.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(PSL_VAR_DIR=str(var_dir), PSL_DEMO="1", DJANGO_SETTINGS_MODULE="webapp.settings")
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.slow
def test_it_runs_a_task_through_the_filesystem_broker_on_sqlite(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    migrated = _manage(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr

    db = tmp_path / "db.sqlite3"
    assert db.is_file()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool=solo", "-Q", "cpu", "-l", "warning"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        sent = _manage(env, "shell", "-c",
                       "from webapp.tasks import ping; ping.apply_async(args=['from-another-process'], queue='cpu')")
        assert sent.returncode == 0, sent.stderr
        assert (tmp_path / "broker" / "queue").is_dir()  # the broker is a folder under var/
        marker = tmp_path / "ping" / "from-another-process"
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), f"the worker never ran the task; its output:\n{_stop(worker)}"
        assert marker.read_text() == "pong"
    finally:
        _stop(worker)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read() if proc.stdout else ""


def test_it_refuses_to_start_with_a_malformed_database_url(tmp_path: Path) -> None:
    env = {**_embedded_env(tmp_path), "DATABASE_URL": "nonsense"}
    out = _manage(env, "check")
    assert out.returncode != 0
    assert "ImproperlyConfigured" in out.stderr
    assert "DATABASE_URL" in out.stderr
