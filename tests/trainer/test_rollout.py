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


def test_the_shared_prefill_cache_continues_each_prompt_exactly_like_a_full_forward(smol: tuple[Any, Any]) -> None:
    import torch

    model, tok = smol
    prompts = _prompts(tok)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])  # left padding
    att = (torch.arange(width) >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    positions = (att.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        cache = TransformersBackend(model, tok)._shared_prefill(ids, att, 2)
        last = model(
            input_ids=ids.repeat_interleave(2, 0)[:, -1:],
            attention_mask=att.repeat_interleave(2, 0),
            position_ids=positions.repeat_interleave(2, 0)[:, -1:],
            past_key_values=cache,
        ).logits[:, -1]
        full = model(input_ids=ids, attention_mask=att, position_ids=positions).logits[:, -1]
    assert torch.allclose(last, full.repeat_interleave(2, 0), atol=1e-4)
