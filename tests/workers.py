"""Real Celery worker processes for tests, connected to the test database and the test broker.

Use the ``start_worker`` fixture from tests that need runs to really execute; the data they
create must be committed (``transactional_db`` / ``live_server``) for the worker to see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

REPO = Path(__file__).resolve().parents[1]


def _database_url() -> str:
    """The test database, as the URL a worker process is configured with."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'])}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class WorkerProcess:
    def __init__(self, name: str) -> None:
        env = dict(os.environ)
        env.update(DJANGO_SETTINGS_MODULE="webapp.settings_test", DATABASE_URL=_database_url(),
                   CELERY_BROKER_URL=settings.CELERY_BROKER_URL, PSL_VAR_DIR=str(settings.VAR_DIR),
                   PSL_RUNS_DIR=str(settings.PSL_RUNS_DIR))
        self.log = Path(settings.VAR_DIR) / f"worker-{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool=solo", "-Q", "cpu", "-n",
             f"{name}@%h", "-l", "info", "--without-mingle", "--without-gossip"],
            cwd=REPO, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str], WorkerProcess]]:
    from django.test import override_settings

    from webapp.celery import app

    overrides = override_settings(PSL_RUNS_DIR=tmp_path / "runs")  # run ids restart with each test database
    overrides.enable()

    app.control.purge()  # messages left by an earlier, interrupted session would name stale run ids
    started: list[WorkerProcess] = []

    def start(name: str = "test") -> WorkerProcess:
        worker = WorkerProcess(name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    overrides.disable()
