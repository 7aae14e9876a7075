"""Trainer test helpers: a tiny config that trains on the ``sanity`` task, whose reward a random model
earns about half of the time (on ``arith`` tiny-random earns nothing and every update would be zero)."""

from __future__ import annotations

from typing import Any

from trainer.config import TrainConfig


def tiny_config(tmp_path: Any, **overrides: Any) -> TrainConfig:
    base = dict(
        model="tiny-random",
        task="sanity",
        steps=2,
        n=2,
        questions_per_step=2,
        mini_batches=2,
        micro_batch_size=2,
        max_new_tokens=8,
        lr=1e-3,
        checkpoint_every=0,
        samples_per_step=1,
        output_dir=str(tmp_path / "out"),
    )
    base.update(overrides)
    return TrainConfig(**base)
