"""Workflow services: state transitions are compare-and-set, and nothing is enqueued before commit."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workers import Broker
from trainer.config import TrainConfig
from webapp import services
from webapp.models import Activity, Run, RunStatus, Study

pytestmark = pytest.mark.django_db


def _small(**overrides: Any) -> TrainConfig:
    return TrainConfig(n=2, questions_per_step=2, mini_batches=2, micro_batch_size=8, steps=3).replace(**overrides)


def test_it_enqueues_a_new_run_only_after_the_transaction_commits(
    project: Any, alice: Any, broker: Broker, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.run_create(project=project, user=alice, config=_small(), queue="cpu", tags=["a", "b"])
    assert broker.messages("cpu") == []  # still inside the transaction: a worker would not find the row
    for callback in callbacks:
        callback()
    (message,) = broker.messages("cpu")
    assert (message.task, message.args, message.kwargs) == ("webapp.tasks.execute_run", [run.pk, 0], {})
    run.refresh_from_db()
    assert run.celery_task_id == message.id  # kept so that a cancel can revoke the message
    assert run.status == RunStatus.QUEUED
    assert sorted(run.tags.values_list("name", flat=True)) == ["a", "b"]
    assert run.config["n"] == 2 and run.total_steps == 3
    assert Activity.objects.filter(project=project, verb="launched").exists()


def test_it_rejects_an_unknown_queue(project: Any, alice: Any) -> None:
    with pytest.raises(services.ServiceError, match="unknown queue 'gpu-tpu'"):
        services.run_create(project=project, user=alice, config=_small(), queue="gpu-tpu", enqueue=False)
    assert not Run.objects.exists()


def test_it_cancels_a_queued_run_at_once(make_run: Any, alice: Any) -> None:
    run = services.run_cancel(run=make_run(status="queued"), user=alice)
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None


def test_it_asks_a_running_run_to_stop_and_leaves_the_rest_to_the_worker(make_run: Any, alice: Any) -> None:
    run = services.run_cancel(run=make_run(status="running"), user=alice)
    assert run.status == RunStatus.RUNNING and run.cancel_requested


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled", "lost"])
def test_it_refuses_to_cancel_a_finished_run(make_run: Any, alice: Any, status: str) -> None:
    with pytest.raises(services.ServiceError, match="only queued or running runs can be cancelled"):
        services.run_cancel(run=make_run(status=status), user=alice)


def test_it_resumes_a_lost_run_as_a_new_attempt(
    make_run: Any, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    lost = make_run(status="lost")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = services.run_resume(run=lost, user=alice)
    assert (run.status, run.attempt, run.cancel_requested) == (RunStatus.QUEUED, 1, False)
    assert len(callbacks) == 1  # enqueued once, after commit


def test_a_resumed_run_of_an_older_schema_has_its_config_rewritten_and_the_changes_on_its_log(
    make_run: Any, alice: Any
) -> None:
    old = make_run(status="failed", algorithm="grpo", n=8)
    legacy = {k: v for k, v in old.config.items() if k not in ("mini_batches", "schema_version")}
    old.config = {**legacy, "mini_batch_size": 16, "warmup_ratio": 0.1, "_resumed_from_step": 2}
    old.save(update_fields=["config"])
    run = services.run_resume(run=old, user=alice)
    assert (run.config["mini_batches"], run.config["schema_version"], run.config["_resumed_from_step"]) == (2, 2, 2)
    assert "mini_batch_size" not in run.config and "warmup_ratio" not in run.config
    assert list(run.logs.filter(attempt=1).values_list("level", "message")) == [
        ("warning", "stored config migrated: mini_batch_size=16 became mini_batches=2 (optimizer steps per epoch)"),
        ("warning", "stored config migrated: warmup_ratio=0.1 dropped: not a field of this version"),
    ]


def test_a_resumed_run_of_the_current_schema_keeps_its_config_and_log(make_run: Any, alice: Any) -> None:
    stopped = make_run(status="cancelled", eta=0.2)
    before = dict(stopped.config)
    run = services.run_resume(run=stopped, user=alice)
    assert run.config == before and not run.logs.exists()


def test_it_refuses_to_resume_a_succeeded_run(make_run: Any, alice: Any) -> None:
    with pytest.raises(services.ServiceError, match="only failed, cancelled or lost runs resume"):
        services.run_resume(run=make_run(status="succeeded"), user=alice)


def test_it_expands_a_grid_into_every_combination() -> None:
    cells = services.grid_cells(_small(), {"eta": [0.01, 0.1], "rollout_sharing": [True, False], "seed": [1, 2]})
    assert len(cells) == 8 and all(c.error == "" for c in cells)
    assert {(c.config.eta, c.config.rollout_sharing, c.config.seed) for c in cells if c.config} == {
        (e, r, s) for e in (0.01, 0.1) for r in (True, False) for s in (1, 2)
    }
    assert cells[1].label == "eta=0.01, rollout_sharing=true, seed=2"


def test_it_reports_the_bad_cell_of_a_grid_by_field() -> None:
    good, bad = services.grid_cells(_small(), {"alpha": [0.5, 2.0]})
    assert good.config is not None and good.config.alpha == 0.5
    assert bad.config is None and bad.error.startswith("alpha: ")


def test_a_study_runs_exactly_the_cells_it_is_given(
    project: Any, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # The configs come from the cells (built once, for the preview), not from a second expansion.
    cells = services.grid_cells(_small(seed=7, steps=5), {"eta": [0.01, 0.1]})
    with django_capture_on_commit_callbacks(execute=False):
        study = services.study_create_grid(project=project, user=alice, name="s", factors={"eta": [0.01]}, cells=cells)
    assert [(r.config["eta"], r.seed, r.total_steps) for r in study.runs.order_by("id")] == [(0.01, 7, 5), (0.1, 7, 5)]


def test_it_refuses_a_study_with_an_invalid_cell(project: Any, alice: Any) -> None:
    factors = {"alpha": [0.5, 2.0]}
    with pytest.raises(services.ServiceError, match="1 of 2 runs have an invalid config"):
        services.study_create_grid(
            project=project, user=alice, name="bad", factors=factors, cells=services.grid_cells(_small(), factors)
        )
    assert not Study.objects.filter(name="bad").exists()


def test_it_creates_a_study_with_its_runs_tags_and_a_baseline(
    project: Any, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        study = services.study_create_grid(
            project=project,
            user=alice,
            name="eta sweep",
            factors={"eta": [0.01, 0.03, 0.1]},
            cells=services.grid_cells(_small(), {"eta": [0.01, 0.03, 0.1]}),
            tags=["sweep"],
        )
    runs = list(study.runs.order_by("id"))
    assert [r.config["eta"] for r in runs] == [0.01, 0.03, 0.1]
    assert all(list(r.tags.values_list("name", flat=True)) == ["sweep"] for r in runs)
    assert study.baseline == runs[0]
    assert runs[1].name == "eta sweep: eta=0.03"


def test_it_only_accepts_a_baseline_from_the_study(project: Any, alice: Any, make_run: Any) -> None:
    study = Study.objects.create(project=project, name="s")
    inside, outside = make_run(), make_run()
    inside.study = study
    inside.save()
    assert services.study_set_baseline(study=study, run=inside, user=alice).baseline == inside
    with pytest.raises(services.ServiceError, match="must be a run of this study"):
        services.study_set_baseline(study=study, run=outside, user=alice)


def test_it_validates_config_data_with_the_trainers_rules() -> None:
    assert services.config_errors({"alpha": 0.3}) == {}
    assert services.config_errors({"alpha": 3}) == {"alpha": "must be in [0.0, 1.0], got 3.0"}
