"""Run under torchrun: a few steps of every algorithm on the sanity task, each step probed on the
rollouts this rank trains on (tests/trainer/learning.py), under DDP or FSDP2.

Arguments: the output folder and the parallelism (``ddp`` or ``fsdp``). Writes one JSON line per
case to ``<folder>/rank<r>.jsonl`` (both ranks printing to one pipe could interleave): the gradient
norm of every step and, per mode, the log-prob gap of every step with its permutation p-value
(tests/trainer/test_distributed.py asserts the direction on every rank).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tests.trainer.learning import CASES, LEARNING, train_and_measure
from trainer.config import TrainConfig
from trainer.engine.distributed import DistContext
from trainer.loop import setup

# Every case under DDP; under FSDP (whose update is also tested equal to DDP's) GRPO and Policy
# Split with and without rollout sharing, to keep the test's time down.
RUNS = {"ddp": list(CASES), "fsdp": ["grpo", "policy_split", "policy_split-unshared"]}

if __name__ == "__main__":
    dist = DistContext.from_env()
    assert dist is not None, "run me under torchrun"
    out, parallelism = Path(sys.argv[1]) / f"rank{dist.rank}.jsonl", sys.argv[2]
    for name in RUNS[parallelism]:
        cfg = TrainConfig(
            model="tiny-random",
            max_new_tokens=8,
            micro_batch_size=2,
            lr=1e-3,
            samples_per_step=0,
            checkpoint_every=0,
            output_dir=tempfile.mkdtemp(),
            parallelism=parallelism,
            **LEARNING,
            **CASES[name],
        )
        state = setup(cfg, dist=dist)
        meter, grad_norms = train_and_measure(state, rank=dist.rank, world_size=dist.world_size)
        directions = {m: {"per_step": d.per_step, "p_value": d.p_value} for m, d in meter.result().items()}
        report = {"rank": dist.rank, "case": name, "grad_norms": grad_norms, "directions": directions}
        with out.open("a") as fh:
            fh.write(json.dumps(report) + "\n")
    dist.close()
