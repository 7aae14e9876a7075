"""What a sample shows: the response a reader sees, without the control tokens that end it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.data.datasets import Question
from trainer.data.prompts import control_token_ids
from trainer.loop import generate, grade, make_samples, score_contexts, setup

pytestmark = pytest.mark.slow


def test_a_real_smollm2_sample_leaves_its_control_tokens_out_of_text_heatmap_and_count(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="smollm2-135m",
        algorithm="grpo",
        task="sanity",
        n=2,
        questions_per_step=1,
        max_new_tokens=24,
        samples_per_step=1,
        output_dir=str(tmp_path),
    )
    state = setup(cfg)
    state.step = 1
    rollouts = generate(state, [Question(id="hi", prompt="Say hello in one short sentence.", answer="")])
    hidden = control_token_ids(state.tokenizer)
    assert state.tokenizer.convert_tokens_to_ids("<|im_end|>") in hidden
    ended = [ids for ids in rollouts.responses[0] if ids and ids[-1] in hidden]
    assert ended, "no response ended on a control token"  # the model closed its turn with <|im_end|>

    samples = make_samples(
        state, rollouts, score_contexts(state, rollouts), grade(state.task, state.tokenizer, rollouts), None
    )

    for sample, ids in zip(samples, rollouts.responses[0], strict=True):
        shown = [t for t in ids if t not in hidden]
        assert "<|im_end|>" not in sample.response and "<|im_end|>" not in sample.tokens
        assert sample.num_tokens == len(shown) == len(sample.tokens) == len(sample.surprisal)
        assert "".join(sample.tokens) == sample.response  # the heatmap spells exactly the shown text
    assert any(s.num_tokens == len(ids) - 1 for s, ids in zip(samples, rollouts.responses[0], strict=True))
