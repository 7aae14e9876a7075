"""Direction of learning: a few steps on an earnable reward move every algorithm the right way.

On the ``sanity`` task tiny-random earns a reward about half of the time, so every group has
rewarded and unrewarded responses. Each step is probed on the rollouts it trains on (regenerated
from the step's seed): the rewarded responses must gain log-probability on the unrewarded ones,
at every step and in every mode, beyond what a random dealing of the rewards explains (see
``tests/trainer/learning.py``). An update that climbs the loss, or that flips the advantages' sign,
fails these tests. Each first checks that the update is more than weight decay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.conftest import tiny_config
from tests.trainer.learning import (
    CASES,
    LEARNING,
    STEPS,
    DirectionMeter,
    assert_learns,
    checkpoint_weights,
    load_weights,
    own_context_logp,
    probe_step,
    train_and_measure,
    weights_beyond_decay,
)
from trainer.loop import setup
from trainer.registry import resolve

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("case", CASES)
def test_a_few_steps_raise_the_log_probability_of_the_rewarded_responses(case: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, **LEARNING, **CASES[case])
    state = setup(cfg)
    initial = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    meter, grad_norms = train_and_measure(state)

    assert min(grad_norms) > 0
    moved = weights_beyond_decay(initial, state.model.state_dict(), lr=cfg.lr, wd=cfg.weight_decay, steps=STEPS)
    assert moved > 1e-4, moved
    assert_learns(meter.result(), cfg.modes)


def _run_cli(cfg_path: Path, events: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "trainer",
        "train",
        "--no-progress",
        "--config",
        str(cfg_path),
        "--events",
        str(events),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert out.returncode == 0, out.stderr[-4000:]


def measure_run(cfg: Any, events: Path, *, world_size: int = 1) -> DirectionMeter:
    """Probe the steps of a finished run from its checkpoints: rank 0's rollouts of step k regenerated
    on the weights of step k − 1, scored under those and under the weights of step k."""
    samples = {
        e["step"]: e["samples"] for e in map(json.loads, events.read_text().splitlines()) if e["kind"] == "samples"
    }
    state = setup(cfg)
    meter = DirectionMeter()
    ckpt = Path(cfg.output_dir) / "checkpoints"
    for step in range(1, cfg.steps + 1):
        start = Path(resolve(cfg.model)) if step == 1 else ckpt / f"step_{step - 1:06d}"
        load_weights(state, checkpoint_weights(start))
        probe = probe_step(state, step, world_size=world_size)
        regenerated = [state.tokenizer.decode(r, skip_special_tokens=True) for r in probe.rollouts.responses[0]]
        assert regenerated == [s["response"] for s in samples[step]], "the probe did not regenerate the run's rollouts"
        load_weights(state, checkpoint_weights(ckpt / f"step_{step:06d}"))
        meter.add(probe, own_context_logp(state, probe.rollouts))
    return meter


@pytest.mark.parametrize("case", CASES)
def test_a_few_steps_under_the_cli_raise_the_log_probability_of_the_rewarded_responses(
    case: str, tmp_path: Path
) -> None:
    cfg = tiny_config(tmp_path, **LEARNING, **CASES[case], checkpoint_every=1, keep_checkpoints=STEPS)
    cfg_path, events = tmp_path / "config.json", tmp_path / "events.jsonl"
    cfg_path.write_text(json.dumps(cfg.to_dict()))

    _run_cli(cfg_path, events)

    initial = checkpoint_weights(resolve("tiny-random"))
    last = checkpoint_weights(Path(cfg.output_dir) / "checkpoints" / f"step_{STEPS:06d}")
    moved = weights_beyond_decay(initial, last, lr=cfg.lr, wd=cfg.weight_decay, steps=STEPS)
    assert moved > 1e-4, moved
    assert_learns(measure_run(cfg, events).result(), cfg.modes)
