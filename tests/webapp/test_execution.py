"""Runs execute on real Celery worker processes: metrics land, cancel is fast, crashes are recovered.

These tests use committed data (``transactional_db``) so that the worker processes, which
connect to the same test database, see it; the broker is the configured one (Redis in CI).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Count

from tests.workers import WorkerProcess
from trainer.config import TrainConfig
from webapp.models import Checkpoint, EvalResult, EvalStatus, Evaluation, MetricPoint, Run, RunStatus, Sample, Worker
from webapp.services import run_cancel, run_create, run_resume
from webapp.worker import execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _config(**overrides: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        model="tiny-random",
        task="sanity",  # a reward tiny-random earns half of the time: every step's update is non-zero
        algorithm="policy_split",
        steps=6,
        n=2,
        questions_per_step=2,
        mini_batches=2,
        micro_batch_size=8,
        max_new_tokens=8,
        checkpoint_every=2,
        samples_per_step=1,
        lr=1e-3,
    )
    base.update(overrides)
    return TrainConfig(**base)


def _wait(predicate: Callable[[], bool], *, timeout: float, what: str, worker: WorkerProcess | None = None) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        close_old_connections()
        if predicate():
            return time.monotonic() - start
        time.sleep(0.25)
    detail = f"\nworker output:\n{worker.output()}" if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def _status(run: Run) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=run.pk)


def _training(
    start_worker: Callable[[str], WorkerProcess],
    project: Any,
    alice: Any,
    worker_name: str,
    *,
    steps: int,
    checkpoint_every: int,
    reached: int,
) -> tuple[Run, WorkerProcess]:
    """A run submitted to a new worker, once that worker has trained ``reached`` of its steps."""
    run = run_create(project=project, user=alice, config=_config(steps=steps, checkpoint_every=checkpoint_every))
    worker = start_worker(worker_name)
    _wait(lambda: Run.objects.get(pk=run.pk).step >= reached, timeout=240, what=f"{reached} steps", worker=worker)
    return run, worker


def test_a_submitted_run_executes_on_a_worker_and_its_metrics_and_samples_appear(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run = run_create(project=project, user=alice, config=_config(steps=3))
    worker = start_worker("w1")

    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=240, what="the run to succeed", worker=worker)

    run.refresh_from_db()
    assert run.step == 3 and run.host.startswith("w1@")
    per_key = MetricPoint.objects.filter(run=run, key="train/reward").values_list("step", flat=True)
    assert sorted(per_key) == [1, 2, 3]
    grad_norms = MetricPoint.objects.filter(run=run, key="actor/grad_norm").values_list("value", flat=True)
    assert len(grad_norms) == 3 and min(grad_norms) > 0  # a real update at every step
    assert set(Sample.objects.filter(run=run).values_list("mode", flat=True)) == {"normal", "he"}
    assert run.summary["normal/entropy"] > 0
    assert Checkpoint.objects.filter(run=run, step=3).exists()
    assert Worker.objects.filter(name__startswith="w1@").exists()


def test_a_succeeded_run_is_then_evaluated_in_both_modes_by_the_worker(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"PSL_EVAL_AFTER_TRAINING": "1", "PSL_EVAL_FINAL_K": "2", "PSL_EVAL_FINAL_LIMIT": "3"}.items():
        monkeypatch.setenv(name, value)  # read by the worker process's settings
    run = run_create(project=project, user=alice, config=_config(steps=2, task="arith"))
    worker = start_worker("w-eval")

    _wait(
        lambda: Evaluation.objects.filter(run=run, status=EvalStatus.SUCCEEDED).count() == 2,
        timeout=240,
        what="both final evaluations",
        worker=worker,
    )

    assert _status(run) == RunStatus.SUCCEEDED
    evals = {ev.mode: ev for ev in Evaluation.objects.filter(run=run)}
    assert set(evals) == {"normal", "he"}
    for ev in evals.values():
        assert (ev.benchmark, ev.step, ev.settings["k"], ev.settings["limit"]) == ("arith", 2, 2, 3)
        assert ev.settings["host"].startswith("w-eval@")
        assert EvalResult.objects.filter(evaluation=ev).count() == 3 * 2  # questions × k
        assert 0.0 <= ev.metrics["accuracy"] <= 1.0


def test_a_running_run_is_cancelled_within_ten_seconds_keeping_its_data(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run, worker = _training(start_worker, project, alice, "w2", steps=200, checkpoint_every=50, reached=2)

    run_cancel(run=Run.objects.get(pk=run.pk), user=alice)
    took = _wait(lambda: _status(run) == RunStatus.CANCELLED, timeout=30, what="the cancel", worker=worker)

    assert took <= 10, f"cancel took {took:.1f}s"
    run.refresh_from_db()
    assert 2 <= run.step < 200
    assert Checkpoint.objects.filter(run=run, step=run.step).exists()  # a final checkpoint on cancel
    assert MetricPoint.objects.filter(run=run, key="train/reward").count() == run.step


def test_a_queued_run_is_cancelled_before_any_worker_takes_it(project: Any, alice: Any) -> None:
    run = run_create(project=project, user=alice, config=_config(), enqueue=False)
    run_cancel(run=run, user=alice)
    assert execution.claim(run.pk, run.attempt, host="late-worker") is None
    assert _status(run) == RunStatus.CANCELLED


def test_a_killed_worker_leaves_a_lost_run_that_resumes_without_duplicate_or_missing_steps(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run, worker = _training(start_worker, project, alice, "w3", steps=8, checkpoint_every=2, reached=3)

    worker.kill()
    time.sleep(settings.PSL_LOST_AFTER_SECONDS + 1)
    assert execution.sweep_lost_runs() == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.LOST
    assert MetricPoint.objects.filter(run=run, key="train/reward").count() >= 3  # data kept

    run_resume(run=run, user=alice)
    worker2 = start_worker("w4")
    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=300, what="the resumed run", worker=worker2)

    run.refresh_from_db()
    assert run.attempt == 1 and run.step == 8
    counts = (
        MetricPoint.objects.filter(run=run).values("key").annotate(n=Count("id"), steps=Count("step", distinct=True))
    )
    assert counts and all(row["n"] == row["steps"] == 8 for row in counts if row["key"].startswith("train/"))
    steps = sorted(MetricPoint.objects.filter(run=run, key="train/reward").values_list("step", flat=True))
    assert steps == list(range(1, 9))


def test_a_worker_shutting_down_checkpoints_its_run_and_requeues_it_for_the_next_worker(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run, worker = _training(start_worker, project, alice, "w-deploy", steps=10, checkpoint_every=50, reached=2)

    worker.proc.terminate()  # SIGTERM: Celery's warm shutdown, as on a deploy or Ctrl-C of the demo
    worker.proc.wait(timeout=60)

    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.QUEUED, 1), worker.output()
    stopped_at = run.step
    assert 2 <= stopped_at < 10
    assert Checkpoint.objects.filter(run=run, step=stopped_at).exists()  # written on the way out, not by schedule
    worker2 = start_worker("w-after-deploy")  # no one resumes it by hand: the requeued message is waiting
    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=300, what="the requeued run", worker=worker2)

    run.refresh_from_db()
    assert run.attempt == 1 and run.step == 10 and run.host.startswith("w-after-deploy@")
    assert run.config["_resumed_from_step"] == stopped_at
    steps = sorted(MetricPoint.objects.filter(run=run, key="train/reward").values_list("step", flat=True))
    assert steps == list(range(1, 11))


def test_no_metric_is_lost_while_postgresql_is_down(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    if connection.vendor != "postgresql" or os.geteuid() != 0:
        pytest.skip("needs the local PostgreSQL cluster that bin/services controls (root)")
    run = run_create(project=project, user=alice, config=_config(steps=10, checkpoint_every=0))
    worker = start_worker("w5")
    _wait(lambda: Run.objects.get(pk=run.pk).step >= 2, timeout=240, what="two steps", worker=worker)

    connection.close()
    subprocess.run(["pg_ctlcluster", "15", "main", "stop", "-m", "fast"], check=True)
    try:
        time.sleep(6)  # the trainer keeps training; the worker buffers and retries
    finally:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True)
    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=300, what="the run to finish", worker=worker)

    steps = sorted(MetricPoint.objects.filter(run=run, key="train/reward").values_list("step", flat=True))
    assert steps == list(range(1, 11))
    assert Run.objects.get(pk=run.pk).step == 10


def test_a_multi_gpu_run_is_launched_under_torchrun(make_run: Any, tmp_path: Any) -> None:
    run = make_run()
    run.gpus = 4
    cmd = execution.trainer_command(run, tmp_path / "c.json", tmp_path / "e.jsonl", tmp_path / "STOP", resume=True)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    assert cmd[-1] == "--resume"
    run.gpus = 1
    single = execution.trainer_command(run, tmp_path / "c.json", tmp_path / "e.jsonl", tmp_path / "STOP", resume=False)
    assert single[1:4] == ["-m", "trainer", "train"]


def test_the_sweep_marks_only_stale_running_runs_lost(make_run: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    stale, fresh, queued = make_run(status="running"), make_run(status="running"), make_run(status="queued")
    Run.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    Run.objects.filter(pk=fresh.pk).update(heartbeat_at=timezone.now())
    assert execution.sweep_lost_runs() == [stale.pk]
    assert execution.sweep_lost_runs(exclude=stale.pk) == []
    assert [_status(r) for r in (stale, fresh, queued)] == ["lost", "running", "queued"]
