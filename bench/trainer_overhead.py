"""Policy Split vs GRPO at equal generated sequences and equal optimizer steps, side by side in one
process, and both next to the peer a user would pick instead: TRL's GRPOTrainer.

    python bench/trainer_overhead.py [--models tiny-random,smollm2-135m] [--steps 3] [--no-trl]

Work per training step (the same for all three): 2 questions × 8 generated sequences of at most
64 tokens, fp32, one optimizer step, no KL. Policy Split generates n=4 rollouts per mode and trains
every response under both contexts (4n = 16 rows per question); GRPO generates and trains n = 8
(docs/method.md §0, §11). Steps alternate between the algorithms (A B A B …) so that machine load
affects both alike. Peak memory is the highest resident set size sampled during an algorithm's
steps above the process's resident size before it started, after handing freed memory back to
the OS (both models stay loaded, so the difference is the step's own working memory).

Prints per phase (generate, score, update) seconds and tokens/s (generated, scored and trained
prompt+response tokens), the PS/GRPO step-time and memory ratios, and each phase's throughput per
token relative to GRPO's (1.00 = Policy Split pays only for its extra tokens). TRL runs in its own
virtualenv (``var/.venv-trl``, created on first use; TRL is not a project dependency) through
``bench/trl_peer.py``, on the same model, prompts and sampling.
Targets (issue 15): SmolLM2 PS/GRPO ≤ 1.6× time, ≤ 1.2× memory; our GRPO ≤ 0.9× TRL's step time;
our Policy Split ≤ 1.6× TRL's GRPO.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trainer.config import TrainConfig
from trainer.events import Callbacks
from trainer.loop import setup, train_step

REPO = Path(__file__).resolve().parents[1]


class PeakRss:
    """Samples this process's RSS every 10 ms while active."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        # The other algorithm's step ran just before: hand its freed memory back to the OS first, or
        # this step would reuse it unseen and look smaller than it is.
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def configs(model: str, max_new_tokens: int, mini_batches: int) -> dict[str, TrainConfig]:
    common: dict[str, Any] = dict(
        model=model,
        questions_per_step=2,
        micro_batch_size=8,
        mini_batches=mini_batches,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        samples_per_step=0,
        checkpoint_every=0,
        lr=1e-6,
        output_dir="var/bench/overhead",
    )
    return {
        "policy_split": TrainConfig(algorithm="policy_split", n=4, **common),  # 16 generated, 32 trained rows
        "grpo": TrainConfig(algorithm="grpo", n=8, **common),  # 16 generated, 16 trained rows
    }


def bench_model(model: str, steps: int, max_new_tokens: int, mini_batches: int) -> dict[str, float]:
    cfgs = configs(model, max_new_tokens, mini_batches)
    states = {name: setup(cfg) for name, cfg in cfgs.items()}
    timings: dict[str, list[dict[str, float]]] = {name: [] for name in cfgs}
    peaks: dict[str, float] = dict.fromkeys(cfgs, 0.0)
    for step in range(steps + 1):  # step 0 warms up both
        for name, state in states.items():
            state.step = step + 1
            with PeakRss() as rss:
                m = train_step(state, Callbacks())
            if step > 0:
                timings[name].append(m)
                peaks[name] = max(peaks[name], rss.delta_mb)
    return _report(model, cfgs, timings, peaks)


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


PHASES = (("generate", "perf/generated_tokens"), ("score", "perf/scored_tokens"), ("update", "perf/trained_tokens"))


def _rate(rows: list[dict[str, float]], phase: str, tokens: str) -> float:
    """Tokens per second of a phase, over all measured steps (0 when the phase did no work)."""
    seconds = sum(r[f"timing/{phase}_s"] for r in rows)
    return sum(r[tokens] for r in rows) / seconds if seconds > 1e-3 and any(r[tokens] for r in rows) else 0.0


def _report(
    model: str, cfgs: dict[str, TrainConfig], timings: dict[str, list[dict[str, float]]], peaks: dict[str, float]
) -> dict[str, float]:
    ps, grpo = timings["policy_split"], timings["grpo"]
    print(f"\n## {model}  ({len(ps)} measured steps each, median seconds per training step)")
    print(
        f"{'':14}{'gen/q':>6}{'rows/q':>7}{'opt steps':>10}{'generate':>9}{'score':>7}{'update':>8}{'step':>7}"
        f"{'gen tok/s':>10}{'score tok/s':>12}{'train tok/s':>12}{'peak MB':>8}"
    )
    for name, rows in timings.items():
        cfg = cfgs[name]
        rates = [_rate(rows, phase, key) for phase, key in PHASES]
        print(
            f"{name:14}{cfg.generated_per_question:>6}{cfg.rows_per_question:>7}{cfg.optimizer_steps_per_step:>10}"
            f"{_median(rows, 'timing/generate_s'):>9.2f}{_median(rows, 'timing/score_s'):>7.2f}"
            f"{_median(rows, 'timing/update_s'):>8.2f}{_median(rows, 'timing/step_s'):>7.2f}"
            f"{rates[0]:>10.0f}{rates[1]:>12.0f}{rates[2]:>12.0f}{peaks[name]:>8.0f}"
        )
    ratio = _median(ps, "timing/step_s") / _median(grpo, "timing/step_s")
    mem = peaks["policy_split"] / max(peaks["grpo"], 1e-9)
    print(f"step-time ratio PS/GRPO: {ratio:.2f}x (target ≤ 1.60x)   peak-memory ratio: {mem:.2f}x (target ≤ 1.20x)")
    parts = []
    for phase, key in PHASES:
        a, b = _rate(ps, phase, key), _rate(grpo, phase, key)
        parts.append(f"{phase} {a / b:.2f}" if a and b else f"{phase} n/a (GRPO has no {phase} pass)")
    print("throughput per token PS/GRPO (1.00 = only the extra tokens cost): " + ", ".join(parts))
    return {
        "policy_split": _median(ps, "timing/step_s"),
        "grpo": _median(grpo, "timing/step_s"),
        "ratio": ratio,
        "memory_ratio": mem,
    }


def bench_trl(model: str, steps: int, max_new_tokens: int) -> float | None:
    """Median step seconds of TRL's GRPOTrainer on the same work, in its own virtualenv."""
    venv = REPO / "var" / ".venv-trl"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for TRL (not a project dependency) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pins = [
            f"torch=={torch.__version__.split('+')[0]}",
            f"transformers=={_version('transformers')}",
            f"accelerate=={_version('accelerate')}",
            f"datasets=={_version('datasets')}",
            "trl==1.13.0",
            "psutil",
            "requests",
        ]
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
    from trainer.registry import resolve

    out = subprocess.run(
        [
            str(python),
            str(REPO / "bench" / "trl_peer.py"),
            "--model",
            resolve(model),
            "--steps",
            str(steps),
            "--max-new-tokens",
            str(max_new_tokens),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if out.returncode != 0:
        print(f"TRL peer failed:\n{out.stderr[-3000:]}")
        return None
    line = [x for x in out.stdout.splitlines() if x.startswith("TRL_STEP_S ")][-1]
    return float(line.split()[1])


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny-random,smollm2-135m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--mini-batches", type=int, default=1, help="optimizer steps per training step (both)")
    parser.add_argument("--no-trl", action="store_true", help="skip the TRL peer")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("PSL_TORCH_THREADS", "2")))
    for model in args.models.split(","):
        with_trl = not args.no_trl and args.mini_batches == 1
        # TRL runs in another process, so it cannot alternate step by step with ours: it runs before
        # and after our steps and the mean of the two is the peer's time, so that a change of machine
        # load during the benchmark biases neither side.
        trl_before = bench_trl(model, args.steps, args.max_new_tokens) if with_trl else None
        ours = bench_model(model, args.steps, args.max_new_tokens, args.mini_batches)
        trl_after = bench_trl(model, args.steps, args.max_new_tokens) if trl_before else None
        if trl_before and trl_after:
            trl = (trl_before + trl_after) / 2
            print(
                f"TRL GRPOTrainer: {trl:.2f} s/step (before {trl_before:.2f}, after {trl_after:.2f});  "
                f"our GRPO / TRL: {ours['grpo'] / trl:.2f}x (target ≤ 0.90x);  "
                f"our Policy Split / TRL GRPO: {ours['policy_split'] / trl:.2f}x (target ≤ 1.60x)"
            )


if __name__ == "__main__":
    main()
