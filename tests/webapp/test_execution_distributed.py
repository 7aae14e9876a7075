"""A run asking for k > 1 GPUs is launched by its worker under torchrun (gloo on a CPU host)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import close_old_connections

from tests.workers import WorkerProcess
from trainer.config import TrainConfig
from webapp.models import Checkpoint, MetricPoint, Run, RunLog, RunStatus
from webapp.services import run_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_two_gpu_fsdp_run_trains_sharded_under_torchrun_on_its_worker(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    config = TrainConfig(
        model="tiny-random",
        algorithm="entropy_reg",
        entropy_coef=1.0,
        steps=2,
        n=2,
        questions_per_step=2,
        max_new_tokens=8,
        checkpoint_every=1,
        samples_per_step=1,
        lr=1e-3,
        gpus=2,
        parallelism="fsdp",
    )
    run = run_create(project=project, user=alice, config=config)
    worker = start_worker("w-dist")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        close_old_connections()
        if Run.objects.get(pk=run.pk).status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.LOST):
            break
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, worker.output())
    assert sorted(MetricPoint.objects.filter(run=run, key="actor/grad_norm").values_list("step", flat=True)) == [1, 2]
    assert MetricPoint.objects.filter(run=run, key="actor/grad_norm", value__gt=0).count() == 2  # a real update
    messages = list(RunLog.objects.filter(run=run).values_list("message", flat=True))
    assert any("data parallel over 2 processes (cpu, fsdp)" in m for m in messages)
    last = Checkpoint.objects.get(run=run, step=2)
    assert (Path(last.path) / "distcp" / ".metadata").is_file()  # every rank wrote its shards
