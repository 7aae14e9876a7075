"""System metrics of a running trainer, sampled by its worker: the trainer's process tree, the
host, and each GPU through NVML. Stored with the run's metrics under ``system/``
(trainer.metrics.SYSTEM_METRICS); their step is the second of training time, counted across
attempts, at which the sample was taken.

NVML comes from the optional ``pynvml`` package (``nvidia-ml-py``): where it is not installed, or
no NVIDIA driver is present (the CPU machines this project is developed on), the GPU keys are
simply absent and nothing else changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import psutil

log = logging.getLogger(__name__)


class Nvml:
    """The GPUs this worker may use (CUDA_VISIBLE_DEVICES, by index), read through NVML if present."""

    def __init__(self) -> None:
        self.handles: list[tuple[int, Any]] = []
        try:
            import pynvml  # optional (nvidia-ml-py); absent on CPU hosts
        except ImportError:
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:  # pynvml.NVMLError: no driver, no GPU
            log.info("NVML unavailable (%s); no GPU system metrics", exc)
            return
        self.nvml = pynvml
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        indices = [int(v) for v in visible.split(",") if v.strip().isdigit()] if visible else list(range(count))
        for local, index in enumerate(i for i in indices if i < count):
            self.handles.append((local, pynvml.nvmlDeviceGetHandleByIndex(index)))

    def sample(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for local, handle in self.handles:
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:  # a GPU that fell off the bus: skip it this time
                continue
            values[f"system/gpu{local}/utilization_percent"] = float(util.gpu)
            values[f"system/gpu{local}/memory_used_mb"] = memory.used / 2**20
            values[f"system/gpu{local}/memory_percent"] = 100.0 * memory.used / memory.total if memory.total else 0.0
        return values


class SystemSampler:
    """Samples a process tree (the trainer, torchrun and its ranks) and the host on each call."""

    def __init__(self, pid: int, *, nvml: Nvml | None = None) -> None:
        self.pid = pid
        self.nvml = nvml if nvml is not None else Nvml()
        self._procs: dict[int, psutil.Process] = {}  # kept: cpu_percent measures since the last call
        psutil.cpu_percent(None)  # the first host reading starts the interval

    def sample(self) -> dict[str, float]:
        """The current values (trainer.metrics.SYSTEM_METRICS); {} once the process is gone."""
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return {}
        cpu = rss = 0.0
        alive: dict[int, psutil.Process] = {}
        for proc in tree:
            known = self._procs.get(proc.pid, proc)
            with contextlib.suppress(psutil.Error):
                if known.status() == psutil.STATUS_ZOMBIE:  # exited: its readings are zeros
                    continue
                proc_cpu = known.cpu_percent(None)  # 0.0 on a process's first reading
                proc_rss = known.memory_info().rss
                cpu, rss = cpu + proc_cpu, rss + proc_rss
                alive[proc.pid] = known
        self._procs = alive
        if not alive:  # every process of the tree has exited
            return {}
        memory = psutil.virtual_memory()
        values = {
            "system/cpu_percent": cpu,
            "system/rss_mb": rss / 2**20,
            "system/host_cpu_percent": psutil.cpu_percent(None),
            "system/host_memory_percent": float(memory.percent),
        }
        values.update(self.nvml.sample())
        return values
