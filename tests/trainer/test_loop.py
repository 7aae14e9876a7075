"""End to end on the real (tiny) model: every algorithm trains, resumes exactly, and stops on request.

The runs train on the ``sanity`` task (tests/trainer/conftest.py), where tiny-random earns a reward
about half of the time, so every update has a gradient; the direction of learning is tested in
tests/trainer/test_learning.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.conftest import tiny_config
from tests.trainer.learning import weights_beyond_decay
from trainer import metrics as vocab
from trainer.choices import ALGORITHMS
from trainer.data.prompts import HE_SYSTEM_PROMPT
from trainer.events import Callbacks, Sample
from trainer.loop import generate, score_contexts, setup, train
from trainer.registry import resolve
from trainer.rl.algorithms import build_rows

pytestmark = pytest.mark.slow


class Recorder:
    def __init__(self) -> None:
        self.metrics: dict[int, dict[str, float]] = {}
        self.samples: dict[int, list[Sample]] = {}
        self.checkpoints: list[tuple[int, str]] = []
        self.progress: list[tuple[int, int]] = []

    def callbacks(self, **extra: Any) -> Callbacks:
        return Callbacks(
            on_metrics=lambda step, m: self.metrics.__setitem__(step, m),
            on_samples=lambda step, s: self.samples.__setitem__(step, s),
            on_checkpoint=lambda step, path: self.checkpoints.append((step, path)),
            on_progress=lambda done, total: self.progress.append((done, total)),
            **extra,
        )


def _weights(folder: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_it_trains_two_steps_of_every_algorithm(algorithm: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, algorithm=algorithm)
    rec = Recorder()

    result = train(cfg, rec.callbacks())

    assert result.steps_done == 2
    assert sorted(rec.metrics) == [1, 2]
    last = rec.metrics[2]
    assert math.isfinite(last["actor/pg_loss"])
    expected = {k for k in vocab.expand(cfg.modes) if not k.startswith("eval/")}
    if not cfg.is_policy_split:
        expected -= {k for k in expected if k.startswith("split/")}
    if algorithm in ("clip_cov", "kl_cov"):  # no dual clip in these losses (docs/method.md §10.3–§10.4)
        expected -= {"actor/clip_frac_lower"}
    if algorithm == "kl_cov":  # KL-Cov does not clip at all
        expected -= {"actor/clip_frac"}
    assert expected <= set(last), expected - set(last)
    assert all(vocab.is_known(k) for k in last), [k for k in last if not vocab.is_known(k)]
    before, after = _weights(resolve("tiny-random")), _weights(result.checkpoint or "")
    # A zero gradient would still move every weight by AdamW's decay: the update must do more.
    assert weights_beyond_decay(before, after, lr=cfg.lr, wd=cfg.weight_decay, steps=2) > 1e-4
    modes = {s.mode for s in rec.samples[1]}
    assert modes == set(cfg.modes)
    assert len(rec.samples[1]) == cfg.n * len(cfg.modes)  # all rollouts of one question


def test_it_scores_shared_responses_under_a_real_he_system_turn_with_the_same_token_ids(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, algorithm="policy_split", n=2)
    state = setup(cfg)
    state.step = 1
    questions = state.pool[:2]
    rollouts = generate(state, questions)
    scores = score_contexts(state, rollouts)
    rewards = torch.tensor(
        [[state.task.grade(q, "x" * len(r)) for r in rs] for q, rs in zip(questions, rollouts.responses, strict=True)]
    )
    rows, _ = build_rows(cfg, rollouts, scores, rewards)

    q4_prompt = state.tokenizer.decode(rollouts.prompt_for(0, "he", 0))  # HE context, normal rollout
    assert "<|im_start|>system\n" + HE_SYSTEM_PROMPT in q4_prompt
    assert q4_prompt.index(HE_SYSTEM_PROMPT) < q4_prompt.index(questions[0].prompt)
    normal_response = rollouts.responses[0][0]
    trained_under = [
        (ctx, p) for ctx, p, r in zip(rows.contexts, rows.prompts, rows.responses, strict=True) if r is normal_response
    ]
    assert sorted(ctx for ctx, _ in trained_under) == ["he", "normal"]  # Q1 and Q4: the very same token ids
    assert len(rows) == 4 * cfg.n * len(questions)


def test_it_resumes_from_a_checkpoint_with_the_same_next_steps(tmp_path: Path) -> None:
    straight = Recorder()
    full = train(tiny_config(tmp_path / "a", steps=4), straight.callbacks())

    first, second = Recorder(), Recorder()
    train(tiny_config(tmp_path / "b", steps=2), first.callbacks())
    resumed = train(tiny_config(tmp_path / "b", steps=4), second.callbacks(), resume=True)

    assert sorted(second.metrics) == [3, 4]  # step numbering continues
    for step in (3, 4):
        for key in ("train/reward", "actor/pg_loss", "normal/entropy", "split/he_normal_kl"):
            assert second.metrics[step][key] == pytest.approx(straight.metrics[step][key], rel=1e-5, abs=1e-6), key
    a, b = _weights(full.checkpoint or ""), _weights(resumed.checkpoint or "")
    cfg = tiny_config(tmp_path)
    assert weights_beyond_decay(_weights(resolve("tiny-random")), a, lr=cfg.lr, wd=cfg.weight_decay, steps=4) > 1e-4
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_it_stops_between_steps_when_asked_and_still_checkpoints(tmp_path: Path) -> None:
    rec = Recorder()
    cfg = tiny_config(tmp_path, steps=5)
    result = train(cfg, rec.callbacks(should_stop=lambda: len(rec.metrics) >= 2))

    assert result.stopped_early
    assert result.steps_done == 2
    assert rec.checkpoints[-1][0] == 2
    assert rec.progress[-1] == (2, 5)


def test_it_trains_each_mode_on_its_own_rollouts_without_sharing(tmp_path: Path) -> None:
    rec = Recorder()
    cfg = tiny_config(tmp_path, rollout_sharing=False)
    train(cfg, rec.callbacks())
    assert rec.metrics[1]["perf/trained_rows"] == 2 * cfg.n * cfg.questions_per_step


def test_it_evaluates_both_modes_on_held_out_questions_when_asked(tmp_path: Path) -> None:
    rec = Recorder()
    train(
        tiny_config(tmp_path, algorithm="grpo", steps=2, eval_every=2, eval_questions=3),
        rec.callbacks(),
    )
    assert "eval/normal/accuracy" not in rec.metrics[1]
    assert 0.0 <= rec.metrics[2]["eval/normal/accuracy"] <= 1.0
    assert 0.0 <= rec.metrics[2]["eval/he/accuracy"] <= 1.0
