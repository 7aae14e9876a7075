"""The memory planner's CPU estimate next to the measured peaks, phase by phase.

    python bench/planner_validation.py [--only tiny-random|smollm2-135m]

Each case runs trainer.memprobe.measure (the engine's own scoring pass, PPO update and rollout
backend's generate on worst-case rows: every row at max_prompt_length + max_new_tokens, distinct
prompts, random advantages; live-tensor peak from the profiler's allocation events, gradients of
the previous step alive as in the loop) and trainer.planner.plan_memory(device="cpu"). The same cases are the
test tests/trainer/test_planner_measured.py (within 25 %); figures in
docs/results/2026-12-03-gpu-hosts.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

COMMON: dict[str, Any] = {
    "questions_per_step": 1,
    "samples_per_step": 1,
    "max_prompt_length": 32,
    "parallelism": "none",
}
PS_BF16_CHECKPOINTED: dict[str, Any] = {
    # the paper's path scaled down: bf16 + fp32 masters, checkpointing, chunks, 2 micro-batches
    "algorithm": "policy_split",
    "n": 2,
    "micro_batch_size": 4,
    "dtype": "bfloat16",
    "gradient_checkpointing": True,
    "logprob_chunk_tokens": 64,
}
CASES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny-random": {
        # one log-prob chunk covering the whole response, no checkpointing, fp32, one micro-batch
        "grpo fp32, whole-response chunk": {"algorithm": "grpo", "n": 4, "micro_batch_size": 4, "max_new_tokens": 256},
        "policy split bf16, checkpointed, 4 chunks": {**PS_BF16_CHECKPOINTED, "max_new_tokens": 256},
        # a loss that differentiates the entropy (no left-over entropy tensors)
        "entropy_reg fp32, 4 chunks": {
            "algorithm": "entropy_reg",
            "entropy_coef": 1.0,
            "n": 4,
            "micro_batch_size": 4,
            "max_new_tokens": 256,
            "logprob_chunk_tokens": 64,
        },
        # 32 sequences in one generate call, sampled with every logits processor (the evaluation's
        # T = 0.6, top-k 20, top-p 0.95): decoding, not the prefill, is generate's peak
        "grpo fp32, 32 rollouts, top-k + top-p": {
            "algorithm": "grpo",
            "questions_per_step": 2,
            "n": 16,
            "micro_batch_size": 8,
            "max_new_tokens": 64,
            "temperature": 0.6,
            "top_k": 20,
            "top_p": 0.95,
        },
    },
    "smollm2-135m": {
        "grpo fp32": {"algorithm": "grpo", "n": 2, "micro_batch_size": 2, "max_new_tokens": 128},
        "policy split bf16, checkpointed, 2 chunks": {**PS_BF16_CHECKPOINTED, "max_new_tokens": 128},
    },
}


def config(model: str, case: str) -> Any:
    from trainer.config import TrainConfig

    return TrainConfig(model=model, **{**COMMON, **CASES[model][case]})


def compare(cfg: Any) -> dict[str, tuple[int, int]]:
    """(planned, measured) bytes of each phase the plan has (the score phase only where the step
    runs a scoring pass), plus ``generate working``: the generate phase above the trainer state."""
    from trainer.memprobe import measure
    from trainer.planner import plan_memory

    measured = measure(cfg)
    plan = plan_memory(cfg, device="cpu")
    out = {phase: (plan.phases[phase], getattr(measured, phase)) for phase in plan.phases}
    out["generate working"] = (plan.phases["generate"] - plan.state_bytes, measured.generate - measured.state)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="planner vs measured CPU peaks")
    parser.add_argument("--only", choices=sorted(CASES), help="one model's cases")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("PSL_TORCH_THREADS", "2")))
    print(f"{'model':<13} {'case':<44} {'phase':<16} {'planned MiB':>11} {'measured MiB':>12} {'planned/measured':>16}")
    for model in [args.only] if args.only else list(CASES):
        for case in CASES[model]:
            t0 = time.perf_counter()
            for phase, (planned, measured) in compare(config(model, case)).items():
                print(
                    f"{model:<13} {case:<44} {phase:<16} {planned / 2**20:>11.0f} {measured / 2**20:>12.0f} "
                    f"{planned / measured:>16.3f}",
                    flush=True,
                )
            print(f"{'':<13} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
