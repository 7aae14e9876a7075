"""Run under torchrun: FSDP2 generation where one rank's responses stop long before the other's.

Rank 0 counts every token as its EOS, so its responses end after one token, while rank 1's run to
``max_new_tokens``. Each decoding step is a call of the sharded model (all-gathers on every rank),
so the rollout backend must keep rank 0 stepping until rank 1 is done (``synced``); then one
training step with a held-out evaluation (generation again) runs. Prints one JSON line per rank:
the length of every rollout and whether the step finished (tests/trainer/test_distributed.py).
"""

from __future__ import annotations

import json
import tempfile

from trainer.config import TrainConfig
from trainer.engine.distributed import DistContext
from trainer.events import Callbacks
from trainer.loop import generate, questions_for_step, setup, train_step

if __name__ == "__main__":
    dist = DistContext.from_env()
    assert dist is not None, "run me under torchrun"
    cfg = TrainConfig(
        model="tiny-random",
        task="sanity",
        algorithm="policy_split",
        parallelism="fsdp",
        n=2,
        questions_per_step=1,
        max_new_tokens=8,
        samples_per_step=0,
        eval_every=1,
        eval_questions=2,
        output_dir=tempfile.mkdtemp(),
    )
    state = setup(cfg, dist=dist)
    if dist.rank == 0:
        state.backend.eos_ids = list(range(state.model.config.vocab_size))  # type: ignore[attr-defined]
    state.step = 1
    rollouts = generate(state, questions_for_step(state.pool, cfg, 1, dist=dist))
    metrics = train_step(state, Callbacks())
    lengths = [len(r) for per_q in rollouts.responses for r in per_q]
    print(json.dumps({"rank": dist.rank, "lengths": lengths, "evaluated": "eval/he/accuracy" in metrics}))
    dist.close()
