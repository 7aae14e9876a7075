"""Checkpoints: model + optimizer + RNG + step, enough to continue exactly where a run stopped.

Data position needs no state of its own: the questions of step s are a pure function of
(seed, s) (see ``loop.questions_for_step``), so restoring the step restores the data position.
A checkpoint is written into a temp folder and renamed, so a crash never leaves half of one.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.paths import STATE_FILE, checkpoint_dir


@dataclass
class Restored:
    step: int
    path: Path


def save_checkpoint(
    output_dir: str | Path, step: int, model: Any, tokenizer: Any, optimizer: Any, config: dict[str, Any], *, keep: int
) -> Path:
    target = checkpoint_dir(output_dir, step)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "config": config,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
        },
        tmp / STATE_FILE,
    )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _prune(Path(output_dir) / "checkpoints", keep=keep)
    return target


def load_trainer_state(path: str | Path, optimizer: Any) -> int:
    """Restore optimizer and RNG state from a checkpoint folder; returns its step."""
    state = torch.load(Path(path) / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    return int(state["step"])


def _prune(root: Path, *, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if p.name.startswith("step_") and not p.name.endswith(".tmp"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
