"""The metric vocabulary: every key the trainer emits, in one place.

Keys are ``<area>/<name>``. Per-mode keys exist for both modes under Policy Split and for the
normal mode only under single-mode algorithms. Entropies are in nats during training (docs/method.md §0);
evaluation reports bits. Inter-mode KLs follow docs/method.md §8 with matched token positions: KL(HE‖normal)
on HE rollouts (Q2 vs Q3) and KL(normal‖HE) on normal rollouts (Q1 vs Q4), k1 estimator, token
mean per sequence then mean over sequences.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

from trainer.choices import MODES

METRICS: dict[str, str] = {
    # rollouts and rewards
    "train/reward": "mean correctness reward over all generated responses",
    "train/reward_std": "std of the rewards over all generated responses",
    "train/frac_zero_adv_groups": "fraction of GRPO groups whose rewards are all equal (advantage 0)",
    "train/truncated_frac": "fraction of generated responses cut at max_new_tokens",
    "{mode}/accuracy": "training accuracy of the mode's own rollouts (Q1 normal, Q2 HE)",
    "{mode}/entropy": "mean full-vocabulary token entropy (nats) of the mode's rollouts under its own context",
    "{mode}/logprob": "mean token log-prob of the mode's rollouts under its own context",
    "{mode}/length": "mean response length in tokens",
    # Policy Split
    "split/he_normal_kl": "KL(π^HE‖π) on HE rollouts (Q2 vs Q3), the paper's inter-mode KL",
    "split/normal_he_kl": "KL(π‖π^HE) on normal rollouts (Q1 vs Q4)",
    "split/clamp_frac": "fraction of valid HE-context tokens where the |A|/κ clamp binds",
    "split/bonus_abs_mean": "mean |bonus| added to the advantage on HE-context tokens",
    # the PPO update
    "actor/pg_loss": "policy loss, averaged over micro-batches",
    "actor/clip_frac": "fraction of tokens where the PPO clip is active (not for kl_cov, which does not clip)",
    "actor/clip_frac_lower": "fraction of tokens where the dual clip (A < 0) is active (not for clip_cov/kl_cov)",
    "actor/approx_kl": "k1 estimate of KL(π_old‖π) over the update",
    "actor/entropy": "mean token entropy (nats) of the current policy on the trained rows",
    "actor/grad_norm": "gradient norm before clipping, averaged over optimizer steps",
    "actor/lr": "learning rate",
    "actor/adv_abs_mean": "mean |advantage| over trained tokens",
    # cost
    "timing/generate_s": "seconds spent sampling rollouts this step",
    "timing/score_s": "seconds spent in the no-grad scoring pass (old log-probs; 0 when the update provides them)",
    "timing/update_s": "seconds spent in forward/backward/optimizer steps",
    "timing/step_s": "wall time of the whole step",
    "perf/generated_tokens": "tokens generated this step",
    "perf/tokens_per_s": "generated tokens per second of generation time",
    "perf/trained_rows": "(context, response) rows trained this step",
    "perf/scored_tokens": "prompt + response tokens of the (context, response) pairs of the no-grad scoring pass",
    "perf/trained_tokens": "prompt + response tokens of the trained rows, times ppo_epochs",
    "perf/peak_rss_mb": "peak resident memory of the trainer process (MB)",
    # held-out evaluation during training (eval_every > 0)
    "eval/{mode}/accuracy": "held-out accuracy (test split, 1 sample per question at T=0.6, top-k 20, top-p 0.95); "
    "single-mode algorithms are evaluated with and without the HE prompt too",
}


SYSTEM_PREFIX = "system/"
SYSTEM_METRICS: dict[str, str] = {
    # Sampled by the worker (webapp.worker.system_metrics), not the trainer; their "step" is the second of
    # the run's training time at which they were sampled (attempts follow one another).
    "system/cpu_percent": "CPU use of the trainer's processes (100 = one core busy)",
    "system/rss_mb": "resident memory of the trainer's processes (MB)",
    "system/host_cpu_percent": "CPU use of the whole host (100 = every core busy)",
    "system/host_memory_percent": "memory in use on the host (%)",
    "system/gpu{gpu}/utilization_percent": "GPU utilisation over the last sample period (%), NVML",
    "system/gpu{gpu}/memory_used_mb": "GPU memory in use (MB), NVML",
    "system/gpu{gpu}/memory_percent": "GPU memory in use (% of the GPU's total), NVML",
}
"""The system metrics of a run: the trainer's process tree and its host, under ``system/``."""


def expand(modes: Iterable[str]) -> set[str]:
    """All concrete keys for the given modes (``{mode}`` substituted)."""
    keys: set[str] = set()
    for key in METRICS:
        if "{mode}" in key:
            keys.update(key.format(mode=m) for m in modes)
        else:
            keys.add(key)
    return keys


def is_known(key: str) -> bool:
    return key in expand(MODES)


class MetricAverager:
    """Collect values over micro-batches and average once per step, skipping NaNs (as TRL does)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            value = float(value)
            if math.isfinite(value):
                self._sums[key] += value
                self._counts[key] += 1

    def result(self) -> dict[str, float]:
        return {k: self._sums[k] / self._counts[k] for k in self._sums if self._counts[k]}
