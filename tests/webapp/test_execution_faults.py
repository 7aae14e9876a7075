"""Faults inside a run's execution on a real worker: bad event lines, a supervision failure, a run
folder that cannot be prepared, and a resume after a kill that happened between write and ingest.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.webapp.test_execution import _config, _status, _wait
from tests.workers import REPO, WorkerProcess
from webapp.models import MetricPoint, Run, RunLog, RunStatus
from webapp.services import run_create, run_resume
from webapp.worker import execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _reward_steps(run: Run) -> list[int]:
    return sorted(MetricPoint.objects.filter(run=run, key="train/reward").values_list("step", flat=True))


def _trainers_of(run: Run) -> list[psutil.Process]:
    """Trainer processes alive for ``run`` (their command line names its config file)."""
    config = str(execution.run_dir(run.pk) / "config.json")
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if config in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
            alive.append(proc)
    return alive


def test_garbage_lines_in_the_events_file_are_quarantined_and_the_run_keeps_every_metric(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run = run_create(project=project, user=alice, config=_config(steps=6, checkpoint_every=0, samples_per_step=0))
    worker = start_worker("w-garbage")
    _wait(lambda: Run.objects.get(pk=run.pk).step >= 1, timeout=240, what="the first step", worker=worker)

    with (execution.run_dir(run.pk) / "events-0.jsonl").open("ab") as fh:  # O_APPEND: between two whole lines
        fh.write(b'{"kind": "metr\n')
        fh.write(b"\x00\xffnot an event at all\n")

    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=240, what="the run to succeed", worker=worker)
    assert _reward_steps(run) == list(range(1, 7))
    skipped = RunLog.objects.filter(run=run, level="warning", message__startswith="skipped an invalid line")
    assert skipped.count() == 2


def test_a_supervision_failure_kills_the_trainer_before_the_run_is_marked_and_before_the_next_run(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    first = run_create(project=project, user=alice, config=_config(steps=200, checkpoint_every=0))
    second = run_create(project=project, user=alice, config=_config(steps=2, checkpoint_every=0))
    worker = start_worker("w-supervision")
    _wait(lambda: Run.objects.get(pk=first.pk).step >= 1, timeout=240, what="the first step", worker=worker)
    assert _trainers_of(first), "the trainer should be running"

    events = execution.run_dir(first.pk) / "events-0.jsonl"
    events.rename(events.with_name("moved.jsonl"))  # the trainer keeps writing to its open file
    events.mkdir()  # reading the events now fails with IsADirectoryError: a fault inside supervision

    _wait(lambda: _status(first) == RunStatus.FAILED, timeout=60, what="the run to be marked failed", worker=worker)
    first.refresh_from_db()
    assert "supervision failed" in first.error and "IsADirectoryError" in first.error
    assert _trainers_of(first) == []  # no orphan trainer
    _wait(lambda: _status(second) == RunStatus.SUCCEEDED, timeout=240, what="the next run", worker=worker)
    second.refresh_from_db()
    assert second.started_at is not None and first.finished_at is not None
    assert second.started_at >= first.finished_at  # the worker never ran two trainers at once


def test_a_run_whose_folder_cannot_be_prepared_fails_with_the_cause(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run = run_create(project=project, user=alice, config=_config(steps=2))
    folder = execution.run_dir(run.pk)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the run folder should be")  # unwritable as a folder, even for root

    worker = start_worker("w-prepare")
    _wait(lambda: _status(run) == RunStatus.FAILED, timeout=60, what="the run to fail", worker=worker)

    run.refresh_from_db()
    assert "could not prepare the run" in run.error and "FileExistsError" in run.error
    assert run.can_resume


def test_a_resume_after_a_kill_ingests_what_the_killed_attempt_wrote_but_never_sent(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any, tmp_path: Path
) -> None:
    # Attempt 0 trained 4 steps and checkpointed step 4, but its worker was SIGKILLed before it
    # ingested them (under load the pump lags the trainer): the database knows none of it.
    run = run_create(project=project, user=alice, config=_config(steps=8, checkpoint_every=2), enqueue=False)
    folder = execution.run_dir(run.pk)
    folder.mkdir(parents=True)
    config = _config(steps=4, checkpoint_every=2).replace(output_dir=str(folder))
    (folder / "config.json").write_text(config.to_json())
    train = ["train", "--config", str(folder / "config.json"), "--events", str(folder / "events-0.jsonl")]
    subprocess.run(
        [sys.executable, "-m", "trainer", *train, "--no-progress"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=240,
    )
    Run.objects.filter(pk=run.pk).update(status=RunStatus.LOST, host="killed-worker")

    run_resume(run=Run.objects.get(pk=run.pk), user=alice)
    worker = start_worker("w-replay")
    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=300, what="the resumed run", worker=worker)

    run.refresh_from_db()
    assert run.config["_resumed_from_step"] == 4
    assert _reward_steps(run) == list(range(1, 9))  # steps 1-4 from the replay, 5-8 from the new attempt
