"""Measuring whether an update learned in the right direction, and that it was an update at all.

An update that descends the loss raises the log-probability of the responses it rewarded above
their group and lowers that of the others. ``direction`` measures exactly that on the very
rollouts a step trained on: the mean per-token change of log π(y | own context) of the responses
with reward 1 minus that of the responses with reward 0, per generating mode. Rollouts are
regenerated from the step's seed on the weights the step started from, so the measurement works
for a run in this process, under the CLI or under torchrun (rank 0's questions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file

from trainer.choices import ALGORITHMS
from trainer.events import Callbacks
from trainer.loop import TrainState, generate, grade, questions_for_step, score_contexts, train_step
from trainer.rl.batch import StepRollouts

STEPS = 3
CASES: dict[str, dict[str, Any]] = {alg: {"algorithm": alg} for alg in ALGORITHMS}
CASES["policy_split-unshared"] = {"algorithm": "policy_split", "rollout_sharing": False}
"""GRPO, Policy Split (with and without rollout sharing) and every baseline."""
LEARNING: dict[str, Any] = {"task": "sanity", "n": 4, "questions_per_step": 2, "mini_batches": 2, "steps": STEPS}
"""Four responses per question and two optimizer steps per step (so PPO's ratio and clipping take part)."""


def weights_beyond_decay(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], *, lr: float, wd: float, steps: int
) -> float:
    """The largest change of any weight beyond what AdamW's decoupled weight decay alone would make.

    With a zero gradient AdamW only multiplies every weight by (1 − lr·wd) per step; an update with a
    gradient moves the weights it touches by about lr per step on top of that.
    """
    decay = (1 - lr * wd) ** steps
    return max(float((after[k].float() - before[k].float() * decay).abs().max()) for k in before)


def checkpoint_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


@dataclass
class Probe:
    """A step's rollouts, their rewards and each response's mean token log-prob under its own mode."""

    rollouts: StepRollouts
    rewards: torch.Tensor  # (S, G)
    logp: torch.Tensor  # (S, G) mean over the response's tokens


def probe_step(state: TrainState, step: int, *, rank: int = 0, world_size: int = 1) -> Probe:
    """Regenerate step ``step``'s rollouts (rank ``rank``'s questions) on the state's current weights."""
    dist = SimpleNamespace(rank=rank, world_size=world_size) if world_size > 1 else None
    state.step = step
    rollouts = generate(state, questions_for_step(state.pool, state.cfg, step, dist=dist))
    rewards = grade(state.task, state.tokenizer, rollouts)
    return Probe(rollouts, rewards, own_context_logp(state, rollouts))


def own_context_logp(state: TrainState, rollouts: StepRollouts) -> torch.Tensor:
    """(S, G) mean token log-prob of each pooled response under the context of the mode that generated it."""
    scores = score_contexts(state, rollouts)
    out = torch.zeros(scores.mask.shape[:2])
    for g, mode in enumerate(rollouts.gen_modes):
        m = scores.mask[:, g]
        out[:, g] = (scores.logp[mode][:, g] * m).sum(-1) / m.sum(-1).clamp_min(1)
    return out


@dataclass
class Direction:
    """How the log-probs of one mode's responses moved over a few steps, rewarded against unrewarded."""

    per_step: list[float]  # mean Δ log π of rewarded minus unrewarded responses, each step
    p_value: float  # chance of a gap at least this large if the rewards had been dealt at random

    @property
    def gap(self) -> float:
        return sum(self.per_step) / len(self.per_step)

    def __str__(self) -> str:
        return f"gap {self.gap:+.4f} (per step {', '.join(f'{d:+.4f}' for d in self.per_step)}), p = {self.p_value:.4f}"


class DirectionMeter:
    """Collects (before, after) log-probs of each trained step and tests the direction per mode.

    The p-value is a permutation test: within every question's group the rewards are dealt out
    again at random (999 times) and the gap recomputed. A gap that seeds and sampling alone could
    produce shows up as a large p-value; an update that climbs the loss gives a negative gap.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[Probe, torch.Tensor]] = []

    def add(self, before: Probe, after_logp: torch.Tensor) -> None:
        self.steps.append((before, after_logp))

    def result(self, *, permutations: int = 999) -> dict[str, Direction]:
        modes = dict.fromkeys(self.steps[0][0].rollouts.gen_modes)
        return {mode: self._mode(mode, permutations) for mode in modes}

    def _mode(self, mode: str, permutations: int) -> Direction:
        groups: list[tuple[torch.Tensor, torch.Tensor]] = []  # per step: (S, n) deltas and rewards
        for before, after in self.steps:
            sel = torch.tensor([m == mode for m in before.rollouts.gen_modes])
            delta, rewards = (after - before.logp)[:, sel], before.rewards[:, sel] > 0
            assert rewards.any() and not rewards.all(), f"{mode}: no spread of rewards to learn from"
            groups.append((delta, rewards))
        observed = [_gap(d, r) for d, r in groups]
        gen = torch.Generator().manual_seed(0)
        at_least = 0
        for _ in range(permutations):
            shuffled = [_gap(d, _shuffle_rows(r, gen)) for d, r in groups]
            at_least += sum(shuffled) >= sum(observed)
        return Direction(observed, (1 + at_least) / (1 + permutations))


def _gap(delta: torch.Tensor, rewarded: torch.Tensor) -> float:
    if rewarded.all() or not rewarded.any():
        return 0.0
    return float(delta[rewarded].mean() - delta[~rewarded].mean())


def _shuffle_rows(rewarded: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The rewards of each question dealt out again among its own responses."""
    perm = torch.argsort(torch.rand(rewarded.shape, generator=gen), dim=1)
    return rewarded.gather(1, perm)


def load_weights(state: TrainState, weights: dict[str, Any]) -> None:
    state.model.load_state_dict(weights, strict=False)  # tied embeddings: lm_head.weight is not stored
    state.backend.sync_weights(state.model)


def train_and_measure(state: TrainState, *, rank: int = 0, world_size: int = 1) -> tuple[DirectionMeter, list[float]]:
    """Train ``cfg.steps`` steps, probing each on the rollouts it trains on; returns the meter and the
    gradient norm of every step."""
    meter, grad_norms = DirectionMeter(), []
    for step in range(1, state.cfg.steps + 1):
        probe = probe_step(state, step, rank=rank, world_size=world_size)  # leaves state.step = step
        grad_norms.append(train_step(state, Callbacks())["actor/grad_norm"])
        meter.add(probe, own_context_logp(state, probe.rollouts))
    return meter, grad_norms


def assert_learns(directions: dict[str, Direction], modes: tuple[str, ...]) -> None:
    """Every mode's rewarded responses gained log-probability on the unrewarded ones at every step,
    by more than a random dealing of the rewards explains (p < 0.01)."""
    assert tuple(directions) == modes
    for mode, d in directions.items():
        assert all(gap > 0 for gap in d.per_step) and d.p_value < 0.01, f"{mode}: {d}"
