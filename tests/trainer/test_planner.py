"""The memory planner's arithmetic and verdicts (pure; the measured CPU peaks are in test_planner_measured)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.planner import (
    GPU_TYPES,
    KNOWN_SHAPES,
    ModelShape,
    gpu_type_from_inventory,
    model_shape,
    plan_memory,
    pool_gpus,
)
from trainer.presets import load_preset, preset_names

REPO = Path(__file__).resolve().parents[2]
H100 = GPU_TYPES["h100-80gb"]


def test_it_counts_the_parameters_of_the_paper_models() -> None:
    # Published sizes: Qwen3-1.7B 1.72 B (tied), 4B 4.02 B (tied), 8B 8.19 B; SmolLM2-135M 134.5 M.
    assert KNOWN_SHAPES["qwen3-1.7b"].n_params / 1e9 == pytest.approx(1.72, abs=0.01)
    assert KNOWN_SHAPES["qwen3-4b"].n_params / 1e9 == pytest.approx(4.02, abs=0.01)
    assert KNOWN_SHAPES["qwen3-8b"].n_params / 1e9 == pytest.approx(8.19, abs=0.01)
    assert KNOWN_SHAPES["smollm2-135m"].n_params / 1e6 == pytest.approx(134.5, abs=0.1)


def test_it_reads_a_shape_from_a_model_folders_config_json(tmp_path: Path) -> None:
    config = {
        "model_type": "qwen3",
        "vocab_size": 1000,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    shape = model_shape(str(tmp_path))
    assert shape == ModelShape(str(tmp_path), 1000, 64, 128, 3, 4, 2, 16, False, qk_norm=True)
    assert model_shape(str(tmp_path / "missing")) is None


def test_it_matches_the_tiny_random_shape_to_the_built_model() -> None:
    from trainer.registry import cache_dir

    folder = cache_dir() / "tiny-random"
    if not (folder / "config.json").is_file():
        pytest.skip("tiny-random not prepared")
    assert (
        ModelShape.from_config("tiny-random", json.loads((folder / "config.json").read_text()))
        == (KNOWN_SHAPES["tiny-random"])
    )


def _paper(**changes: object) -> TrainConfig:
    return load_preset("ps-qwen3-8b").config(**changes)


def test_it_says_a_replicated_8b_model_does_not_fit_and_why() -> None:
    plan = plan_memory(_paper(parallelism="ddp"), gpu=H100)
    assert plan.fits is False
    assert plan.summary().startswith("does not fit: weights, gradients and optimizer state alone need 153 GiB of 80")
    assert plan.summary().endswith("use fsdp or more GPUs")


def test_it_fits_the_paper_recipe_with_fsdp_on_eight_h100s() -> None:
    plan = plan_memory(_paper(), gpu=H100)
    assert plan.fits is True
    assert plan.summary().startswith("fits: ") and plan.summary().endswith(" of 80 GiB per GPU")


def test_it_shards_trainer_state_by_the_number_of_gpus() -> None:
    four, eight = (plan_memory(_paper(gpus=g), gpu=H100).components for g in (4, 8))
    for part in ("weights", "gradients", "optimizer"):
        assert four[part] == pytest.approx(2 * eight[part], rel=1e-6)
    one = plan_memory(_paper(parallelism="ddp"), gpu=H100).components
    assert one["optimizer"] == 2 * one["weights"] == 2 * KNOWN_SHAPES["qwen3-8b"].n_params * 4


def test_it_moves_fsdp_state_to_the_host_with_cpu_offload() -> None:
    plan = plan_memory(_paper(cpu_offload=True), gpu=H100)
    assert plan.components["weights"] == plan.components["optimizer"] == 0


def test_checkpointing_shrinks_the_activations() -> None:
    on = plan_memory(_paper(gradient_checkpointing=True), gpu=H100).components["activations"]
    off = plan_memory(_paper(gradient_checkpointing=False), gpu=H100).components["activations"]
    assert off > 10 * on


def test_a_smaller_log_prob_chunk_needs_less_memory() -> None:
    small = plan_memory(_paper(logprob_chunk_tokens=256), gpu=H100).components["logprob_chunk"]
    large = plan_memory(_paper(logprob_chunk_tokens=4096), gpu=H100).components["logprob_chunk"]
    assert small < large


def test_a_sleeping_vllm_engine_frees_its_reservation_for_the_update() -> None:
    awake = plan_memory(_paper(vllm_sleep=False), gpu=H100)
    asleep = plan_memory(_paper(vllm_sleep=True), gpu=H100)
    reserved = int(0.5 * H100.memory_bytes)
    assert awake.phases["generate"] == asleep.phases["generate"]
    assert awake.phases["update"] - asleep.phases["update"] == reserved - asleep.components["rollout_engine"]


def test_it_refuses_a_vllm_fraction_whose_kv_cache_cannot_hold_one_sequence() -> None:
    plan = plan_memory(_paper(vllm_gpu_memory_utilization=0.1), gpu=H100)
    assert plan.fits is False
    assert "KV cache at vllm_gpu_memory_utilization=0.1 holds" in plan.summary()


def test_it_refuses_more_gpus_than_one_host_has() -> None:
    plan = plan_memory(_paper(gpus=16), gpu=H100, gpus_per_host=8)
    assert plan.fits is False
    assert "asks for 16 GPUs but a host of this pool has 8" in plan.summary()


def test_it_counts_the_tokens_of_a_step() -> None:
    t = plan_memory(_paper(), gpu=H100).tokens
    assert t.generated_rows == 32 * 16  # 32 questions per rank × 2 modes × 8 rollouts
    assert t.trained_rows == 32 * 32  # rollout sharing: 4n rows per question
    assert t.micro_batch_rows == 1  # 16,384-token budget, 13,312-token rows
    assert t.max_generated_tokens == 512 * 12288


def test_it_gives_no_verdict_without_a_gpu_type() -> None:
    plan = plan_memory(load_preset("ps-smollm2-cpu").config())
    assert plan.fits is None and plan.summary().startswith("needs about ")


def test_it_parses_pools_and_rejects_unknown_gpu_types() -> None:
    assert pool_gpus("gpu-h100=h100-80gb:8, gpu-a100=a100-80gb:4") == {
        "gpu-h100": (H100, 8),
        "gpu-a100": (GPU_TYPES["a100-80gb"], 4),
    }
    with pytest.raises(ValueError, match="PSL_POOLS entry 'gpu=tpu:8'"):
        pool_gpus("gpu=tpu:8")


def test_it_takes_a_heartbeats_gpu_memory_and_the_known_speeds() -> None:
    gpu = gpu_type_from_inventory("NVIDIA H200", 143771)
    assert gpu.memory_bytes == 143771 * 2**20 and gpu.bf16_tflops == GPU_TYPES["h200"].bf16_tflops


def test_every_preset_loads_and_validates() -> None:
    names = preset_names()
    for size in ("1.7b", "4b", "8b"):
        assert {f"ps-qwen3-{size}", f"grpo-qwen3-{size}"} <= set(names)
    for name in names:
        cfg = load_preset(name).config()
        assert cfg.preset == name


def test_the_paper_presets_hold_the_papers_settings() -> None:
    for name in ("ps-qwen3-1.7b", "grpo-qwen3-4b", "ps-qwen3-8b"):
        cfg = load_preset(name).config()
        assert (cfg.lr, cfg.n, cfg.questions_per_step * cfg.gpus, cfg.max_new_tokens) == (3e-6, 8, 256, 12288)
        assert (cfg.dtype, cfg.master_dtype, cfg.parallelism) == ("bfloat16", "float32", "fsdp")
        assert cfg.gradient_checkpointing and cfg.rollout_backend == "vllm" and cfg.enable_thinking


def test_it_rejects_an_unknown_preset_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'qwen9'; available: grpo-qwen3-1\.7b"):
        load_preset("qwen9")


def test_the_cli_plans_a_preset_with_overrides() -> None:
    cmd = [sys.executable, "-m", "trainer", "plan", "--preset", "ps-qwen3-8b", "--gpu", "h100-80gb"]
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("fits: ")
    bad = subprocess.run(
        [*cmd, "--set", "parallelism=ddp"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 1 and "use fsdp or more GPUs" in bad.stdout


def _cpu_plan(algorithm: str, **changes: object) -> set[str]:
    cfg = load_preset("ps-smollm2-cpu").config(algorithm=algorithm, **changes)
    return set(plan_memory(cfg).phases)


def test_an_on_policy_grpo_plan_has_no_score_phase() -> None:
    # The loop fuses GRPO's old log-probs into its single update's first forward (no scoring pass).
    plan = plan_memory(load_preset("grpo-qwen3-8b").config(), gpu=H100)
    assert set(plan.phases) == {"generate", "update"}
    assert plan.tokens.scored_tokens == 0 and plan.step_seconds["score"] == 0
    assert _cpu_plan("grpo") == _cpu_plan("forking_tokens") == _cpu_plan("entropy_reg") == {"generate", "update"}


def test_policy_split_and_off_policy_updates_keep_the_score_phase() -> None:
    plan = plan_memory(load_preset("ps-qwen3-8b").config(), gpu=H100)
    assert set(plan.phases) == {"generate", "score", "update"} and plan.tokens.scored_tokens > 0
    # advantages that read the old policy's log-probs or entropies need the pass at one update too
    assert _cpu_plan("eda") == _cpu_plan("entropy_adv") == {"generate", "score", "update"}
    # a second epoch or mini-batch updates from rollouts of an older policy: GRPO scores them first
    assert _cpu_plan("grpo", ppo_epochs=2) == {"generate", "score", "update"}
    assert _cpu_plan("grpo", mini_batches=2) == {"generate", "score", "update"}
