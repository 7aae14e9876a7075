"""The process group under torchrun: each rank trains on its own share of a step's questions.

How gradients are shared (DDP or FSDP2) is ``trainer.engine.parallel``'s business; this module
initialises the group, averages metrics across ranks, and makes ranks agree (a stop request, a
count of forward passes). Only rank 0 writes events. The gloo backend makes the whole path
testable on CPU with 2 processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistContext:
    rank: int
    world_size: int
    device: str

    @classmethod
    def from_env(cls) -> DistContext | None:
        """Initialise from torchrun's environment; None when not launched by torchrun."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            backend, device = "nccl", f"cuda:{local}"
        else:
            backend, device = "gloo", "cpu"
        torch_dist.init_process_group(backend=backend)
        return cls(rank=rank, world_size=world, device=device)

    def average_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.device)  # NCCL: on the GPU
        torch_dist.all_reduce(values, op=torch_dist.ReduceOp.SUM)
        return {k: float(v) / self.world_size for k, v in zip(keys, values.tolist(), strict=True)}

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision for everyone (e.g. a stop request), so no rank waits alone in a collective."""
        value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self.device)
        torch_dist.broadcast(value, src=0)
        return bool(value.item())

    def max_int(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
        return int(tensor.item())

    def barrier(self) -> None:
        torch_dist.barrier()

    def close(self) -> None:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
