"""The database is the queue of record: runs start in submission order whatever the broker's order,
the runs a broker lost or never got are dispatched once it is back, and a run whose only worker
was killed is marked lost with no worker alive. Real processes: workers, the dispatcher, a web
server, Redis (a private server where the test stops it) and PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from tests.webapp.test_execution import _config, _status, _wait
from tests.workers import REPO, Broker, DispatcherProcess, WebProcess, WorkerProcess, free_port, process_env
from webapp import dispatch, services
from webapp.celery import app
from webapp.evaluations.services import evaluations_dispatch
from webapp.models import ApiToken, Evaluation, Run, RunStatus
from webapp.services import run_create

pytestmark = [pytest.mark.django_db(transaction=True)]

ONE_STEP = dict(steps=1, checkpoint_every=0, samples_per_step=0)


def _queued(project: Any, alice: Any, n: int) -> list[Run]:
    """``n`` runs queued a minute ago whose messages were never sent."""
    runs = [run_create(project=project, user=alice, config=_config(**ONE_STEP), enqueue=False) for _ in range(n)]
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(queued_at=timezone.now() - timedelta(minutes=1))
    return runs


def _started_in_order(runs: list[Run]) -> bool:
    started = [Run.objects.get(pk=r.pk).started_at for r in runs]
    return all(a is not None and b is not None and a < b for a, b in itertools.pairwise(started))


def test_the_dispatch_sends_only_the_messages_missing_for_queued_runs_and_is_idempotent(
    project: Any, alice: Any, broker: Broker, make_run: Any
) -> None:
    first, second, _third = _queued(project, alice, 3)
    make_run(status="running")
    dispatch.send(dispatch.EXECUTE_RUN, args=[first.pk, 0], queue="cpu")  # one message survived

    assert services.runs_dispatch() == {"cpu": 2}
    assert services.runs_dispatch() == {}  # nothing is missing any more: no duplicates
    messages = broker.messages("cpu")
    assert sorted(m.args[0] for m in messages) == sorted([first.pk, first.pk, second.pk])
    assert all(m.task == dispatch.EXECUTE_RUN for m in messages)
    assert services.runs_dispatch() == {"cpu": 3}  # the broker lost them all: all three again


def test_only_run_messages_count_for_queued_runs(project: Any, alice: Any, broker: Broker) -> None:
    _queued(project, alice, 1)
    dispatch.send(dispatch.EVALUATE_CHECKPOINT, args=[[12345]], queue="cpu")  # an evaluation's message waits
    assert services.runs_dispatch() == {"cpu": 1}
    tasks = sorted(m.task for m in broker.messages("cpu"))
    assert tasks == sorted([dispatch.EXECUTE_RUN, dispatch.EVALUATE_CHECKPOINT])


def test_queued_evaluations_without_a_waiting_message_are_published_again(make_run: Any, broker: Broker) -> None:
    run = make_run(status="succeeded")
    lost = [
        Evaluation.objects.create(run=run, step=2, benchmark="arith", mode=m, settings={}) for m in ("normal", "he")
    ]
    kept = Evaluation.objects.create(run=run, step=4, benchmark="arith", mode="normal", settings={})
    Evaluation.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    dispatch.send(dispatch.EVALUATE_CHECKPOINT, args=[[kept.pk]], queue="cpu")  # step 4's message survived

    assert evaluations_dispatch() == {"cpu": 1}
    assert evaluations_dispatch() == {}  # idempotent
    messages = broker.messages("cpu")
    assert sorted(m.args[0] for m in messages) == sorted([[kept.pk], [e.pk for e in lost]])


def test_the_messages_waiting_on_the_filesystem_broker_are_read_without_taking_them(
    project: Any, alice: Any, tmp_path: Path
) -> None:
    options = {k: str(tmp_path) for k in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")}
    with Connection("filesystem://", transport_options=options) as conn:
        app.send_task(dispatch.EXECUTE_RUN, args=[7, 1], queue="cpu", connection=conn)
        app.send_task(dispatch.EVALUATE_CHECKPOINT, args=[[3, 4]], queue="cpu", connection=conn)
        app.send_task(dispatch.EXECUTE_RUN, args=[8, 0], queue="gpu-a100", connection=conn)
    waiting = [dispatch._waiting(raw) for raw in dispatch._filesystem_messages(tmp_path, "cpu")]
    assert sorted((w.task, w.args) for w in waiting if w) == [
        (dispatch.EVALUATE_CHECKPOINT, [[3, 4]]),
        (dispatch.EXECUTE_RUN, [7, 1]),
    ]
    assert len(list(tmp_path.glob("*.msg"))) == 3  # still there


@pytest.mark.slow
def test_runs_start_in_submission_order_whatever_order_their_messages_wait_in(
    start_worker: Callable[..., WorkerProcess], project: Any, alice: Any, broker: Broker
) -> None:
    runs = _queued(project, alice, 3)
    for run in reversed(runs):  # the broker holds the newest run's message first (a requeue, a redispatch)
        dispatch.send(dispatch.EXECUTE_RUN, args=[run.pk, run.attempt], queue=run.queue)

    worker = start_worker("w-fifo")
    for run in runs:
        _wait(lambda run=run: _status(run) == RunStatus.SUCCEEDED, timeout=240, what=f"run {run.pk}", worker=worker)
    assert _started_in_order(runs)


@pytest.mark.slow
def test_the_filesystem_broker_starts_runs_in_submission_order_across_a_digit_boundary_of_its_message_names(
    start_worker: Callable[..., WorkerProcess], project: Any, alice: Any, tmp_path: Path
) -> None:
    # kombu's filesystem transport names a message <monotonic ms>_<uuid>.<queue>.msg and takes the
    # first name in string order: one published at 484,352 ms sorts after one at 4,281,938 ms.
    var = tmp_path / "var"
    folders = {name: var / "broker" / sub for name, sub in [("in", "queue"), ("processed", "processed")]}
    for folder in (*folders.values(), var / "broker" / "control"):
        folder.mkdir(parents=True)
    options = {
        "data_folder_in": str(folders["in"]),
        "data_folder_out": str(folders["in"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(var / "broker" / "control"),
        "store_processed": False,
    }
    older, newer = _queued(project, alice, 2)
    with Connection("filesystem://", transport_options=options) as conn:
        for run, published_ms in ((older, 484_352), (newer, 4_281_938)):
            with mock.patch("kombu.transport.filesystem.monotonic", return_value=published_ms / 1000):
                app.send_task(dispatch.EXECUTE_RUN, args=[run.pk, 0], queue="cpu", connection=conn)
    assert [name.split("_")[0] for name in sorted(os.listdir(folders["in"]))] == ["4281938", "484352"]

    worker = start_worker("w-fs-fifo", CELERY_BROKER_URL="filesystem://", PSL_VAR_DIR=str(var))
    for run in (older, newer):
        _wait(lambda run=run: _status(run) == RunStatus.SUCCEEDED, timeout=240, what=f"run {run.pk}", worker=worker)
    assert _started_in_order([older, newer])


class RedisServer:
    """A private Redis without persistence, so that a test may stop it (the shared one never stops)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*cmd, "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        _wait(lambda: self.waiting("cpu") >= 0, timeout=20, what="redis to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # as a crash: whatever it held is gone
            self.proc.wait(timeout=10)

    def waiting(self, queue: str) -> int:
        import redis

        try:
            return int(redis.Redis(port=self.port, socket_connect_timeout=1).llen(queue))
        except redis.ConnectionError:
            return -1


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_runs_submitted_or_lost_while_the_broker_was_away_are_dispatched_once_it_is_back(
    start_worker: Callable[..., WorkerProcess],
    start_dispatcher: Callable[..., DispatcherProcess],
    project: Any,
    alice: Any,
    private_redis: RedisServer,
    tmp_path: Path,
) -> None:
    broker = {"CELERY_BROKER_URL": private_redis.url}
    web = WebProcess(free_port(), **broker)
    dispatcher = start_dispatcher(**broker)
    token = ApiToken.issue(user=alice, name="t")[1]
    body = {**_config(**ONE_STEP).to_dict(), "name": "before the outage"}
    try:
        status, _, first = web.post(f"/api/projects/{project.pk}/runs/", body, token)
        assert status == 201 and first is not None
        assert private_redis.waiting("cpu") == 1  # no worker yet: its message waits in Redis...

        private_redis.stop()  # ...and dies with it
        began = time.monotonic()
        status, ctype, second = web.post(f"/api/projects/{project.pk}/runs/", {**body, "name": "during"}, token)
        submit_seconds = time.monotonic() - began
        assert (status, ctype) == (201, "application/json"), (status, web.output())
        assert second is not None and second["status"] == "queued"
        assert [r.status for r in Run.objects.order_by("id")] == ["queued", "queued"]

        private_redis.start()  # empty: the first message is lost, the second was never sent
        back = time.monotonic()
        _wait(lambda: private_redis.waiting("cpu") >= 2, timeout=60, what="the redispatch", worker=dispatcher)
        redispatch_seconds = time.monotonic() - back
    finally:
        web.stop()
    assert private_redis.waiting("cpu") == 2  # one message per queued run, no duplicates
    print(f"\nsubmit, broker down: {submit_seconds:.1f} s; redispatch after its restart: {redispatch_seconds:.1f} s")
    assert redispatch_seconds <= 2 * settings.PSL_DISPATCH_SECONDS + 10  # one round, a retry, slack

    worker = start_worker("w-after-outage", **broker)
    runs = list(Run.objects.order_by("id"))
    for run in runs:
        _wait(lambda run=run: _status(run) == RunStatus.SUCCEEDED, timeout=240, what=f"run {run.pk}", worker=worker)
    assert _started_in_order(runs)


@pytest.mark.slow
def test_a_killed_run_with_no_worker_left_is_marked_lost_by_the_dispatcher(
    start_worker: Callable[..., WorkerProcess],
    start_dispatcher: Callable[..., DispatcherProcess],
    project: Any,
    alice: Any,
) -> None:
    start_dispatcher()
    run = run_create(project=project, user=alice, config=_config(steps=50, checkpoint_every=0))
    worker = start_worker("w-only")
    _wait(lambda: Run.objects.get(pk=run.pk).step >= 1, timeout=240, what="the first step", worker=worker)

    worker.kill()  # the pool's only worker; its trainer dies with it
    killed = time.monotonic()
    bar = settings.PSL_LOST_AFTER_SECONDS + 30
    _wait(lambda: _status(run) == RunStatus.LOST, timeout=bar, what="the run to be marked lost")
    lost_seconds = time.monotonic() - killed
    print(f"\nlost, no worker alive: {lost_seconds:.1f} s (PSL_LOST_AFTER_SECONDS={settings.PSL_LOST_AFTER_SECONDS})")
    run.refresh_from_db()
    assert "heartbeats" in run.error and run.can_resume


def test_the_dispatcher_runs_without_a_broker_or_a_worker(project: Any, alice: Any) -> None:
    _queued(project, alice, 1)
    env = process_env(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    out = subprocess.run(
        [sys.executable, "manage.py", "dispatcher", "--once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "dispatch failed" in out.stderr and "Connection refused" in out.stderr
