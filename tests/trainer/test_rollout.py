"""The transformers rollout backend: shared prefill samples from the same distribution."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.rollout.backend import SamplingParams, TransformersBackend


@pytest.fixture(scope="module")
def smol() -> tuple[Any, Any]:
    from trainer.registry import load_model, load_tokenizer

    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


def _prompts(tok: Any) -> list[list[int]]:
    texts = ["What is 12 + 7? Answer in a box.", "Hi", "Compute 3 * 9, then explain your steps in detail please."]
    return [tok(t).input_ids for t in texts]


def test_a_shared_prefill_gives_the_same_greedy_tokens_as_one_prefill_per_response(smol: tuple[Any, Any]) -> None:
    model, tok = smol
    greedy = SamplingParams(n=3, top_k=1, max_new_tokens=12, seed=0)  # top-k 1: sampling is argmax
    shared = TransformersBackend(model, tok, share_prefill=True).generate(_prompts(tok), greedy)
    plain = TransformersBackend(model, tok, share_prefill=False).generate(_prompts(tok), greedy)
    assert shared.responses == plain.responses
    assert shared.truncated == plain.truncated
    assert all(len(r) > 0 for r in shared.flat())


def test_a_shared_prefill_still_samples_different_responses_per_prompt(smol: tuple[Any, Any]) -> None:
    model, tok = smol
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=1)
    out = TransformersBackend(model, tok, share_prefill=True).generate(_prompts(tok), params)
    assert [len(per_prompt) for per_prompt in out.responses] == [4, 4, 4]
    # Repeating the cache must not repeat the sample: a prompt's four responses are not one response four times.
    assert all(len({tuple(r) for r in per_prompt}) > 1 for per_prompt in out.responses)
