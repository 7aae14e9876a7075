"""Every enumerated value of the trainer, defined once (no torch, no transformers).

The web tier, the config, the math and the tests all import these tuples from here, so a new
algorithm or aggregation mode is added in one place. Defaults live in ``trainer.config.TrainConfig``
only; the functions in ``trainer.rl.algos`` take their hyperparameters as required keywords.
"""

from __future__ import annotations

ALGORITHMS: tuple[str, ...] = (
    "policy_split",
    "grpo",
    "forking_tokens",
    "clip_cov",
    "kl_cov",
    "eda",
    "entropy_reg",
    "entropy_adv",
)
"""Policy Split and the baselines of docs/method.md §10."""

ENTROPY_GRAD_ALGORITHMS: frozenset[str] = frozenset({"entropy_reg"})
"""The losses that differentiate the token entropy (docs/method.md §10.6); every other loss reads
the entropy as a number, so the update computes it without gradient (no saved tensors)."""

SCORE_FREE_ALGORITHMS: frozenset[str] = frozenset({"grpo", "forking_tokens", "clip_cov", "kl_cov", "entropy_reg"})
"""The algorithms whose advantages read only rewards and response masks: with one optimizer step per
training step they need no old-log-prob (scoring) pass, because the update's own first forward is the
old policy (``TrainConfig.needs_scoring_pass``, read by the loop and the memory planner alike)."""

MODES: tuple[str, ...] = ("normal", "he")
"""The two modes of one Policy Split model: normal and high-entropy (the HE system turn)."""

LOSS_AGGS: tuple[str, ...] = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")
"""How a token loss matrix becomes a scalar (verl's ``agg_loss`` modes)."""

CLAMP_ORDERS: tuple[str, ...] = ("scale_then_clip", "clip_then_scale")
"""scale_then_clip = clip(η·B, ±|A|/κ) (released code); clip_then_scale = η·clip(B, ±|A|/κ) (paper eq. 3)."""

NORMALIZERS: tuple[str, ...] = ("zscore", "mean", "none")
"""Normalisation of the token signal within a (question, context) group."""

ESTIMATORS: tuple[str, ...] = ("logprob", "entropy")
"""Surprisal estimate of the token signal: single-sample −log π or the full-vocabulary entropy."""

KL_KINDS: tuple[str, ...] = ("k1", "k2", "k3")
"""Schulman's KL estimators."""

ROLLOUT_BACKENDS: tuple[str, ...] = ("transformers", "vllm")
Q4_CONTEXTS: tuple[str, ...] = ("paper", "released_code")
"""How the HE context of a normal-mode rollout is written: a real system turn, or the released code's text."""

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")

PARALLELISMS: tuple[str, ...] = ("none", "ddp", "fsdp")
"""How several processes share the training: none (one process), ddp (replicas, gradients averaged by
DistributedDataParallel), fsdp (FSDP2: parameters, gradients and optimizer state sharded)."""

TASKS: tuple[str, ...] = ("arith", "arith-add", "creative", "sanity")
"""Built-in tasks (``trainer.data.datasets``); ``data:<name>`` (or ``file:<path>`` on the command line) names a
dataset file besides these (``trainer.references``)."""

PRIORITIES: tuple[str, ...] = ("high", "normal", "low")
"""Priorities of a queued run, first served first; a pool serves its queued runs by priority, then by rank."""
DEFAULT_PRIORITY = "normal"

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
"""Levels of a run's log lines, least severe first (a filter at one level shows it and the ones after)."""

LOG_SOURCES: tuple[str, ...] = ("trainer", "output", "web")
"""Where a run's log line came from: the trainer's log events, its captured stdout/stderr, or the web tier."""

BOOL_WORDS: dict[str, bool] = {"1": True, "true": True, "yes": True, "on": True}
BOOL_WORDS.update({"0": False, "false": False, "no": False, "off": False})
"""The spellings of a boolean accepted everywhere: config files and forms, query strings, environment."""


def parse_bool(text: str) -> bool:
    """``text`` as a boolean (case and surrounding space ignored); ValueError for any other word."""
    try:
        return BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"expected one of {'/'.join(BOOL_WORDS)}, got {text!r}") from None
