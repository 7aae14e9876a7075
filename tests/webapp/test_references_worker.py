"""The worker checks the names a run reads, where the files are: a run stored with a server path (before
the web tier refused them, or written to the database by hand) fails with one message whether or not
the path exists, and a team's own dataset is seen by that team's runs only. Real worker processes."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import close_old_connections

from tests.workers import WorkerProcess
from webapp.datasets import dataset_upload
from webapp.models import Run, RunStatus, Team
from webapp.services import run_enqueue

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def _wait_all(runs: list[Run], worker: WorkerProcess, timeout: float = 240) -> list[Run]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        close_old_connections()
        done = [Run.objects.get(pk=r.pk) for r in runs]
        if all(r.status in FINISHED for r in done):
            return done
        time.sleep(0.5)
    raise AssertionError(f"runs did not finish:\n{worker.output()}")


def test_server_paths_fail_alike_and_team_data_stays_in_its_team(
    start_worker: Callable[[str], WorkerProcess], make_run: Callable[..., Run], other_project: Any
) -> None:
    data = settings.PSL_TEAMS_DIR / "lab" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "ours.jsonl").write_text("".join(f'{{"question": "{i}+1?", "answer": "{i + 1}"}}\n' for i in range(8)))
    small = {"steps": 1, "n": 2, "questions_per_step": 2, "max_new_tokens": 4, "samples_per_step": 1}
    existing = make_run(task="file:/etc/passwd", **small)
    missing = make_run(task="file:/etc/nonexistent", **small)
    ours = make_run(task="data:ours.jsonl", **small)
    theirs = make_run(task="data:ours.jsonl", project=other_project, **small)
    runs = [existing, missing, ours, theirs]
    for run in runs:
        run_enqueue(run=run)
    worker = start_worker("refs")
    existing, missing, ours, theirs = _wait_all(runs, worker)
    assert ours.status == RunStatus.SUCCEEDED, ours.error
    assert [existing.status, missing.status, theirs.status] == [RunStatus.FAILED] * 3
    said = {
        r.error.split("invalid config: ", 1)[-1].splitlines()[0].replace(r.config["task"], "VALUE")
        for r in (existing, missing)
    }
    assert len(said) == 1, said
    assert "is not available in the data folder" in said.pop()
    assert "is not available in the data folder" in theirs.error


def test_a_run_trains_on_its_teams_uploaded_dataset_and_another_teams_run_cannot_name_it(
    start_worker: Callable[[str], WorkerProcess], make_run: Callable[..., Run], other_project: Any
) -> None:
    rows = "".join(f'{{"question": "{i} + 2?", "answer": "{i + 2}"}}\n' for i in range(8)).encode()
    dataset = dataset_upload(
        team=Team.objects.get(slug="lab"),
        actor=None,
        name="uploaded",
        upload=io.BytesIO(rows),
        filename="uploaded.jsonl",
    )
    small = {"steps": 1, "n": 2, "questions_per_step": 2, "max_new_tokens": 4, "samples_per_step": 1}
    ours = make_run(task=dataset.reference, **small)
    theirs = make_run(task=dataset.reference, project=other_project, **small)
    for run in (ours, theirs):
        run_enqueue(run=run)
    worker = start_worker("uploads")
    ours, theirs = _wait_all([ours, theirs], worker)
    assert ours.status == RunStatus.SUCCEEDED, ours.error
    samples = list(ours.samples.all())
    assert samples and all(s.question_id.startswith("uploaded-") and "+ 2?" in s.prompt for s in samples)
    assert theirs.status == RunStatus.FAILED and "is not available in the data folder" in theirs.error
