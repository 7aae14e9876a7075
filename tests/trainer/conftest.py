"""Trainer test helpers: a task whose reward a random model can earn half of the time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from trainer.config import TrainConfig


@dataclass(frozen=True)
class ParityQuestion:
    id: str
    prompt: str
    answer: str = ""
    kind: str = "math"


class ParityTask:
    """Reward 1 when the response has an even number of characters: ~50 % for a random model,
    so every GRPO group has a spread of rewards and every algorithm gets a learning signal."""

    name = "parity"

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Any]:
        return [ParityQuestion(id=f"p{i}", prompt=f"Say something about the number {i}.") for i in range(12)]

    def grade(self, question: Any, response: str) -> float:
        return float(len(response) % 2 == 0)


@pytest.fixture
def parity_task() -> ParityTask:
    return ParityTask()


def tiny_config(tmp_path: Any, **overrides: Any) -> TrainConfig:
    base = dict(
        model="tiny-random",
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
