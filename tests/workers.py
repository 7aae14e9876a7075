"""Real Celery worker processes for tests, connected to the test database and the test broker,
and the ``broker`` fixture that reads what waits on the test broker's queues.

Use the ``start_worker`` fixture from tests that need runs to really execute; the data they
create must be committed (``transactional_db`` / ``live_server``) for the worker to see it.
Use ``broker`` to assert what was sent: ``broker.messages("cpu")`` takes the waiting task
messages off the queue (Redis or kombu's filesystem transport, whichever CELERY_BROKER_URL names).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a process of the product under test: the test database and broker."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings_test",
        DATABASE_URL=_database_url(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        PSL_VAR_DIR=str(settings.VAR_DIR),
        PSL_RUNS_DIR=str(settings.PSL_RUNS_DIR),
    )
    env.update(extra)
    return env


class ProductProcess:
    """One process of the product (a worker, the dispatcher, the web server), its output in a log."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.log = Path(settings.VAR_DIR) / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

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


class WorkerProcess(ProductProcess):
    """A run worker of the ``cpu`` pool; ``env`` overrides its environment (e.g. another broker)."""

    def __init__(self, name: str, **env: str) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "webapp", "worker", "--pool=solo", "-Q", "cpu"]
        cmd += ["-n", f"{name}@%h", "-l", "info", "--without-mingle", "--without-gossip"]
        super().__init__(f"worker-{name}", cmd, process_env(**env))


class DispatcherProcess(ProductProcess):
    """``manage.py dispatcher``: the lost-run sweep and the dispatch of queued runs, no worker needed."""

    def __init__(self, name: str = "dispatcher", **env: str) -> None:
        super().__init__(name, [sys.executable, "manage.py", "dispatcher"], process_env(**env))


class WebProcess(ProductProcess):
    """The web server (gunicorn, one process) on ``port``, started and answering."""

    def __init__(self, port: int, **env: str) -> None:
        cmd = [sys.executable, "-m", "gunicorn", "webapp.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4"]
        super().__init__(f"web-{port}", cmd, process_env(**env))
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not self._answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"the web server did not start:\n{self.output()}")
            time.sleep(0.25)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.url + "/api/projects/", timeout=2)
        except urllib.error.HTTPError:
            return True  # 401: it is up
        except OSError:
            return False
        return True

    def post(self, path: str, body: dict[str, Any], token: str) -> tuple[int, str, dict[str, Any] | None]:
        status, ctype, parsed, _ = self.raw("POST", path, token=token, data=json.dumps(body).encode())
        return status, ctype, parsed

    def raw(
        self, method: str, path: str, *, token: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, Any] | None, Any]:
        """(status, Content-Type, JSON body or None, headers) of one request with ``token``."""
        request = urllib.request.Request(
            self.url + path,
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, exc.headers, exc.read()
        ctype = headers.get("Content-Type", "")
        return status, ctype, json.loads(raw) if ctype.startswith("application/json") else None, headers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(name, **env)``: a real worker process, stopped at the end of the test."""
    from django.test import override_settings

    from webapp.celery import app

    overrides = override_settings(PSL_RUNS_DIR=tmp_path / "runs")  # run ids restart with each test database
    overrides.enable()

    app.control.purge()  # messages left by an earlier, interrupted session would name stale run ids
    started: list[WorkerProcess] = []

    def start(name: str = "test", **env: str) -> WorkerProcess:
        worker = WorkerProcess(name, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    overrides.disable()


@pytest.fixture
def start_dispatcher() -> Iterator[Callable[..., DispatcherProcess]]:
    """``start_dispatcher(**env)``: a real ``manage.py dispatcher`` process, stopped at the end."""
    started: list[DispatcherProcess] = []

    def start(**env: str) -> DispatcherProcess:
        started.append(DispatcherProcess(f"dispatcher-{len(started)}", **env))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@dataclass(frozen=True)
class TaskMessage:
    """One Celery (protocol 2) task message as it waited on a queue."""

    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]


class Broker:
    """The test broker seen from the test process: purge queues, take the messages waiting on one."""

    def purge(self, *queues: str) -> None:
        """Empty ``queues`` (default: every queue a run can target, PSL_QUEUES)."""
        from kombu import Queue

        from webapp.celery import app

        with app.connection_for_write() as conn:
            for name in queues or settings.PSL_QUEUES:
                Queue(name, channel=conn.default_channel).purge()

    def messages(self, queue: str) -> list[TaskMessage]:
        """The task messages waiting on ``queue``, oldest first; they are removed from it."""
        from kombu import Queue

        from webapp.celery import app

        out: list[TaskMessage] = []
        with app.connection_for_read() as conn:
            bound = Queue(queue, channel=conn.default_channel)
            while (message := bound.get(no_ack=True, accept=["json"])) is not None:
                args, kwargs, _embed = message.decode()  # protocol 2: the body is (args, kwargs, embed)
                out.append(TaskMessage(message.headers["task"], message.headers["id"], args, kwargs))
        return out


@pytest.fixture
def broker() -> Iterator[Broker]:
    """The real test broker, with every run queue empty before and after the test."""
    broker = Broker()
    broker.purge()  # nothing left by an earlier test may count as sent by this one
    yield broker
    broker.purge()  # nor may this test's messages reach a later test's worker
