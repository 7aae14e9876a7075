"""Will a run fit its pool? The memory planner (trainer.planner) fed with what we know of the pool.

A pool's GPUs come from its live workers' heartbeats (name and memory as nvidia-smi reports them,
GPUs per host = the GPUs a worker sees) and otherwise from ``PSL_POOLS``. A CPU pool, or a run on
no GPU, gets an estimate without a verdict.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from trainer.config import TrainConfig
from trainer.planner import GpuType, MemoryPlan, ModelShape, gpu_type_from_inventory, model_shape, plan_memory
from trainer.references import parse_model
from webapp.models import Worker


def pool_hardware(queue: str) -> tuple[GpuType, int] | None:
    """(GPU type, GPUs per host) of a pool, or None when nothing is known of its GPUs."""
    cutoff = timezone.now() - timedelta(seconds=3 * settings.PSL_HEARTBEAT_SECONDS)  # Worker.is_online
    for worker in Worker.objects.filter(last_seen_at__gte=cutoff).order_by("-last_seen_at"):
        if queue in worker.queues and worker.gpus:
            first = worker.gpus[0]
            return gpu_type_from_inventory(str(first.get("name", "GPU")), int(first.get("memory_total_mb", 0))), len(
                worker.gpus
            )
    pool = settings.PSL_POOLS.get(queue)
    return pool if pool else None


def web_model_shape(config: TrainConfig) -> ModelShape | None:
    """The shape of the config's model as the web host knows it: registry names and known hub ids.
    Never read from this host's filesystem (not where the worker's files are, and it must not answer
    questions about paths), and nothing for a ``run:`` checkpoint (the planner has no user to check
    the source run against, so an estimate would tell whether another team's run id exists)."""
    ref = parse_model(config.model)
    if ref is None or ref.kind not in ("builtin", "hub"):
        return None
    return model_shape(ref.name)


def run_plan(config: TrainConfig, queue: str) -> MemoryPlan | None:
    """The planner's estimate for ``config`` on ``queue``; None when the model's shape is unknown."""
    shape = web_model_shape(config)
    if shape is None:
        return None
    hardware = pool_hardware(queue) if config.gpus else None
    if hardware is None:
        return plan_memory(config, shape=shape)
    gpu, per_host = hardware
    return plan_memory(config, shape=shape, gpu=gpu, gpus_per_host=per_host)
