"""The W&B mirror logs offline without a key, keeps its run id across attempts, and never fails a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from webapp.models import Run, RunLog
from webapp.worker.wandb_mirror import WandbMirror

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EVENTS = [
    {"kind": "metrics", "step": 1, "values": {"train/reward": 0.25, "split/he_normal_kl": 0.01}},
    {
        "kind": "samples",
        "step": 1,
        "samples": [
            {
                "question_id": "q1",
                "mode": "he",
                "index": 0,
                "question": "2+2?",
                "response": "<b>4</b>",
                "reward": 1.0,
                "num_tokens": 3,
                "mean_entropy": 0.4,
            }
        ],
    },
    {"kind": "metrics", "step": 2, "values": {"train/reward": 0.5}},
]


def test_it_mirrors_offline_and_reuses_the_run_id_on_resume(make_run: Any, tmp_path: Path, settings: Any) -> None:
    settings.WANDB_MODE = "offline"
    run = make_run(status="running")
    Run.objects.filter(pk=run.pk).update(wandb_enabled=True)
    run.refresh_from_db()

    first = WandbMirror(run, directory=tmp_path)
    first.start()
    first.events(EVENTS)
    first.finish("lost")
    run.refresh_from_db()
    run_id = run.wandb_run_id
    assert run_id
    offline = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert offline and any(p.suffix == ".wandb" for p in offline[0].iterdir())

    second = WandbMirror(run, directory=tmp_path)  # the resumed attempt
    second.start()
    second.events(EVENTS[2:])
    second.finish("succeeded")
    run.refresh_from_db()
    assert run.wandb_run_id == run_id
    assert len(list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))) == 2


def test_a_wandb_failure_switches_the_mirror_off_without_failing_anything(
    make_run: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WANDB_MODE = "offline"
    run = make_run(status="running")
    Run.objects.filter(pk=run.pk).update(wandb_enabled=True)
    run.refresh_from_db()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where W&B wants its folder")

    mirror = WandbMirror(run, directory=blocker)
    mirror.start()
    mirror.events(EVENTS)  # no exception
    mirror.finish("succeeded")

    assert mirror.wb is None
    assert RunLog.objects.filter(run=run, level="warning", message__contains="W&B mirror start failed").exists()


def test_it_does_nothing_for_runs_that_did_not_opt_in(make_run: Any, tmp_path: Path) -> None:
    mirror = WandbMirror(make_run(), directory=tmp_path)
    mirror.start()
    mirror.events(EVENTS)
    assert mirror.wb is None and not any(tmp_path.iterdir())
