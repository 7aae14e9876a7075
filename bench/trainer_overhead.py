"""Policy Split vs GRPO at the same number of generated sequences, side by side in one process.

    python bench/trainer_overhead.py [--models tiny-random,smollm2-135m] [--steps 3]

Policy Split generates n=4 rollouts per mode (8 per question) and trains 4n=16 rows per question;
GRPO generates and trains n=8 rows per question (docs/method.md §0, §11). Both get the same questions, the
same model and the same number of optimizer steps per training step. Steps alternate between the
two algorithms (A B A B …) so that machine load affects both alike. Peak memory is the highest
resident set size sampled during an algorithm's steps, above the process's resident size before
it started, after returning freed memory to the OS (both models stay loaded, so the difference is
the step's own working memory).

Prints the step-time ratio, the peak-memory ratio and where the time goes (generate, score,
update). Target: ≤ 1.4× time (the paper's reported cost).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trainer.config import TrainConfig
from trainer.events import Callbacks
from trainer.loop import setup, train_step


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


def configs(model: str, max_new_tokens: int) -> dict[str, TrainConfig]:
    common = dict(
        model=model,
        questions_per_step=4,
        micro_batch_size=8,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        samples_per_step=0,
        checkpoint_every=0,
        lr=1e-6,
        output_dir="var/bench/overhead",
    )
    return {
        # 64 trained rows, 2 optimizer steps of 32 rows
        "policy_split": TrainConfig(algorithm="policy_split", n=4, mini_batch_size=32, **common),  # type: ignore[arg-type]
        # 32 trained rows, 2 optimizer steps of 16 rows
        "grpo": TrainConfig(algorithm="grpo", n=8, mini_batch_size=16, **common),  # type: ignore[arg-type]
    }


def bench_model(model: str, steps: int, max_new_tokens: int) -> None:
    cfgs = configs(model, max_new_tokens)
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
    _report(model, cfgs, timings, peaks)


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _report(
    model: str, cfgs: dict[str, TrainConfig], timings: dict[str, list[dict[str, float]]], peaks: dict[str, float]
) -> None:
    ps, grpo = timings["policy_split"], timings["grpo"]
    print(f"\n## {model}  ({len(ps)} measured steps each, median seconds per training step)")
    print(
        f"{'':18}{'generated/q':>12}{'trained/q':>10}{'generate':>10}{'score':>9}{'update':>9}{'step':>9}"
        f"{'gen tok':>9}{'peak MB':>9}"
    )
    for name, rows in timings.items():
        cfg = cfgs[name]
        print(
            f"{name:18}{cfg.generated_per_question:>12}{cfg.rows_per_question:>10}"
            f"{_median(rows, 'timing/generate_s'):>10.2f}{_median(rows, 'timing/score_s'):>9.2f}"
            f"{_median(rows, 'timing/update_s'):>9.2f}{_median(rows, 'timing/step_s'):>9.2f}"
            f"{_median(rows, 'perf/generated_tokens'):>9.0f}{peaks[name]:>9.0f}"
        )
    ratio = _median(ps, "timing/step_s") / _median(grpo, "timing/step_s")
    mem = peaks["policy_split"] / max(peaks["grpo"], 1e-9)
    parts = {
        k: _median(ps, f"timing/{k}_s") / max(_median(grpo, f"timing/{k}_s"), 1e-9)
        for k in ("generate", "score", "update")
    }
    print(f"step-time ratio PS/GRPO: {ratio:.2f}x (target ≤ 1.40x)   peak-memory ratio: {mem:.2f}x")
    print("per phase PS/GRPO: " + ", ".join(f"{k} {v:.2f}x" for k, v in parts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="tiny-random,smollm2-135m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("PSL_TORCH_THREADS", "2")))
    for model in args.models.split(","):
        bench_model(model, args.steps, args.max_new_tokens)


if __name__ == "__main__":
    main()
