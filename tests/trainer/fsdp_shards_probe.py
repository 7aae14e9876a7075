"""Run under torchrun: one FSDP2 training step of tiny-random, then report what this rank holds.

Prints one JSON line per rank: its local parameter elements, the full model's elements and the
elements of its AdamW state (tests/trainer/test_distributed.py asserts every rank holds a shard).
"""

from __future__ import annotations

import json
import tempfile

import torch

from trainer.config import TrainConfig
from trainer.engine.distributed import DistContext
from trainer.events import Callbacks
from trainer.loop import setup, train_step

if __name__ == "__main__":
    dist = DistContext.from_env()
    assert dist is not None, "run me under torchrun"
    cfg = TrainConfig(
        model="tiny-random",
        algorithm="entropy_reg",
        entropy_coef=1.0,
        parallelism="fsdp",
        n=2,
        questions_per_step=2,
        max_new_tokens=8,
        samples_per_step=0,
        output_dir=tempfile.mkdtemp(),
    )
    state = setup(cfg, dist=dist)
    state.step = 1
    train_step(state, Callbacks())
    local = sum(p.to_local().numel() for p in state.model.parameters())
    full = sum(p.numel() for p in state.model.parameters())  # a DTensor's numel is the global one
    opt = sum(
        v.to_local().numel()
        for s in state.optimizer.state.values()
        for k, v in s.items()
        if k in ("exp_avg", "exp_avg_sq") and isinstance(v, torch.Tensor)
    )
    print(json.dumps({"rank": dist.rank, "local_numel": local, "full_numel": full, "optimizer_state_numel": opt}))
    dist.close()
