"""System metrics: the worker samples its trainer's processes, the host and (through NVML, where
present) each GPU into the run's metrics under system/, on a time axis that survives a resume."""

from __future__ import annotations

import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import pytest

from trainer.metrics import SYSTEM_METRICS
from webapp.models import MetricPoint
from webapp.worker import ingest
from webapp.worker.system_metrics import Nvml, SystemSampler

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"


@pytest.fixture
def busy_child() -> Any:
    # A parent that waits on a busy grandchild: the sampler must add up the whole tree.
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}])"
    proc = subprocess.Popen([sys.executable, "-c", code])
    yield proc
    proc.kill()
    proc.wait()


def test_it_samples_the_trainers_process_tree_and_the_host(busy_child: Any) -> None:
    sampler = SystemSampler(busy_child.pid, nvml=Nvml())
    time.sleep(1.0)
    sampler.sample()  # the grandchild's first reading starts its interval
    time.sleep(1.0)

    values = sampler.sample()

    host = {"system/host_cpu_percent", "system/host_memory_percent"}
    assert set(values) == {"system/cpu_percent", "system/rss_mb", *host}
    assert values["system/cpu_percent"] > 10  # the busy grandchild (up to a core; the machine is shared)
    assert values["system/rss_mb"] > 5
    assert 0 < values["system/host_cpu_percent"] <= 100 and 0 < values["system/host_memory_percent"] < 100
    assert all(key in SYSTEM_METRICS for key in values)


def test_a_finished_process_gives_no_sample_even_before_it_is_reaped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    sampler = SystemSampler(proc.pid, nvml=Nvml())
    time.sleep(1.0)  # exited, not yet waited for: a zombie

    assert sampler.sample() == {}
    proc.wait()
    assert sampler.sample() == {}


def test_without_pynvml_there_are_no_gpu_keys_and_with_it_one_set_per_visible_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # "not installed", as on this machine
    assert Nvml().handles == []

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 4,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=10 * h),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=h * 2**30, total=8 * 2**30),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")

    values = Nvml().sample()

    assert values == {
        "system/gpu0/utilization_percent": 20.0,
        "system/gpu0/memory_used_mb": 2048.0,
        "system/gpu0/memory_percent": 25.0,
        "system/gpu1/utilization_percent": 30.0,
        "system/gpu1/memory_used_mb": 3072.0,
        "system/gpu1/memory_percent": 37.5,
    }
    generic = {key.replace("gpu0", "gpu{gpu}").replace("gpu1", "gpu{gpu}") for key in values}
    assert generic <= set(SYSTEM_METRICS)


@pytest.mark.django_db
def test_a_resume_rewinds_the_training_steps_but_keeps_the_system_seconds(make_run: Callable[..., Any]) -> None:
    run = make_run(status="failed")
    ingest.metrics_record([(run.pk, "train/reward", s, 0.5) for s in (1, 2, 3)])
    ingest.metrics_record([(run.pk, "system/cpu_percent", s, 90.0) for s in (0, 5, 10, 15)])

    ingest.run_rewind(run.pk, to_step=2)

    steps = dict.fromkeys(["train/reward", "system/cpu_percent"])
    for key in steps:
        steps[key] = list(MetricPoint.objects.filter(run=run, key=key).order_by("step").values_list("step", flat=True))
    assert steps == {"train/reward": [1, 2], "system/cpu_percent": [0, 5, 10, 15]}
