"""With nothing configured the product runs on SQLite (WAL) and a filesystem Celery broker.

These tests use real processes: one migrates, one runs a Celery worker, a third enqueues a task,
and the worker executes it. No PostgreSQL, no Redis.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(PSL_VAR_DIR=str(var_dir), PSL_DEMO="1", DJANGO_SETTINGS_MODULE="webapp.settings")
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sent = _manage(
            env,
            "shell",
            "-c",
            "from webapp.tasks import ping; ping.apply_async(args=['from-another-process'], queue='cpu')",
        )
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_demo(var_dir: Path, port: int, *options: str) -> tuple[subprocess.Popen[str], str]:
    """``manage.py demo`` on the embedded defaults in its own session; returns it with what it
    printed up to its URL line (reading blocks until then)."""
    env = {**_embedded_env(var_dir), "PSL_MODEL_CACHE": str(REPO / "var" / "models")}  # converted once per machine
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), *options],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    assert demo.stdout is not None
    for line in demo.stdout:
        output.append(line)
        if "Policy Split Lab is running" in line:
            break
    return demo, "".join(output)


@pytest.mark.slow
def test_the_demo_command_serves_the_app_trains_a_run_and_stops_on_ctrl_c_keeping_the_run(tmp_path: Path) -> None:
    port = _free_port()
    demo, output = _start_demo(tmp_path, port, "--model", "tiny-random")
    try:
        assert demo.stdout is not None
        assert f"http://127.0.0.1:{port}/projects/1/runs/" in output, output
        assert "user: demo   password: policy-split-demo" in demo.stdout.readline()
        login = _get(f"http://127.0.0.1:{port}/login/", timeout=60)
        assert "Log in" in login

        db = sqlite3.connect(tmp_path / "db.sqlite3")
        rows = db.execute("SELECT name, priority FROM webapp_run ORDER BY id").fetchall()
        assert rows == [  # the quick Policy Split run starts first (high priority), then its GRPO twin
            ("demo: Policy Split, tiny-random (quick)", 0),
            ("demo: GRPO, tiny-random (quick)", 1),
            ("demo: Policy Split, tiny-random (60 steps)", 2),
        ]
        _until(
            lambda: db.execute("SELECT step FROM webapp_run WHERE id = 1").fetchone()[0] >= 2,
            timeout=240,
            what="the worker to train the fast demo run",
        )

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        rest, _ = demo.communicate(timeout=150)
        assert demo.returncode == 0 and "Stopped." in rest, rest
        status, attempt, step = db.execute("SELECT status, attempt, step FROM webapp_run WHERE id = 1").fetchone()
        assert (status, attempt) == ("queued", 1)  # checkpointed and requeued, to resume at the next start
        assert 2 <= step < 20
        with pytest.raises(OSError):  # the web server went down with it
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


@pytest.mark.slow
def test_a_sigterm_to_the_demo_alone_stops_its_server_worker_and_dispatcher_too(tmp_path: Path) -> None:
    port = _free_port()
    demo, _ = _start_demo(tmp_path, port, "--no-runs")
    try:
        assert "Log in" in _get(f"http://127.0.0.1:{port}/login/", timeout=60)
        assert len(_processes_of(tmp_path)) >= 4  # the demo, gunicorn, the worker, the dispatcher
        demo.send_signal(signal.SIGTERM)  # to the demo's own process only, as `kill <pid>` does
        rest, _ = demo.communicate(timeout=150)
        assert demo.returncode == 0 and "Stopped." in rest, rest
        _until(lambda: not _processes_of(tmp_path), timeout=30, what="the demo's children to exit")
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for pid in _processes_of(tmp_path):
            os.kill(pid, signal.SIGKILL)


def _processes_of(var_dir: Path) -> list[int]:
    """Live (not zombie) processes started with this test's PSL_VAR_DIR: the demo passes its
    environment on to everything it starts."""
    marker = f"PSL_VAR_DIR={var_dir}".encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_bytes().rsplit(b") ", 1)[-1][:1]
            if state != b"Z" and marker in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _get(url: str, *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)
