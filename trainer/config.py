"""The one typed training configuration.

``TrainConfig`` is frozen and validates itself in ``__post_init__`` so that an impossible run is
rejected before any model is loaded; every message names the offending field. The web app
stores ``config.to_dict()`` on each Run and rebuilds the config with ``TrainConfig.from_dict``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from trainer.choices import (
    ALGORITHMS,
    CLAMP_ORDERS,
    DTYPES,
    ESTIMATORS,
    LOSS_AGGS,
    NORMALIZERS,
    PARALLELISMS,
    Q4_CONTEXTS,
    ROLLOUT_BACKENDS,
    SCORE_FREE_ALGORITHMS,
    TASKS,
    parse_bool,
)

FIELD_SYMBOLS: dict[str, str] = {"eta": "η", "eta_normal": "η₂", "alpha": "α", "kappa": "κ"}
"""The symbols docs/method.md gives these fields; every label, column and table of the web tier uses them."""


@dataclass(frozen=True)
class EvalSampling:
    """The paper's evaluation sampling (docs/method.md §9): k samples per question and mode at T = 0.6,
    top-k 20, top-p 0.95. The evaluator, the trainer's held-out accuracy and the web tier's evaluation
    forms and defaults all read it from here."""

    k: int = 8
    temperature: float = 0.6
    top_k: int = 20
    top_p: float = 0.95
    max_new_tokens: int = 512
    """Paper: 32,768; CPU runs need far fewer."""


EVAL_SAMPLING = EvalSampling()


# --- limits: the one validation layer of every value a user types (form, API, CLI) -------------------
# TrainConfig applies them to its fields before anything else; the web tier applies the same
# predicates (text_problem, number_problem) to run names, tags, query parameters and ids.
MAX_INT = 2**31 - 1
"""Whole-number fields fit a PostgreSQL integer (the run's seed and steps are stored as columns)."""
MAX_BIGINT = 2**63 - 1
"""Ids and query parameters: what a PostgreSQL bigint holds."""
MAX_FLOAT = 1e6
"""Magnitude beyond which a float field is absurd (η = 1e308), unless NUMBER_LIMITS says otherwise."""
MAX_TEXT = 1000
MAX_EXTRA_BYTES = 16_384
# Largest magnitude of the numeric fields whose sensible range is narrower than MAX_INT / MAX_FLOAT
# (their lower bounds are the field checks of TrainConfig.__post_init__).
FIELD_MAX: dict[str, float] = {
    "steps": 10_000_000,
    "n": 4096,
    "ppo_epochs": 1000,
    "max_prompt_length": 1 << 20,
    "max_new_tokens": 1 << 20,
    "vllm_max_model_len": 1 << 21,
    "vllm_tensor_parallel_size": 1024,
    "gpus": 1024,
    "eta": 1000.0,
    "eta_normal": 1000.0,
    "temperature": 100.0,
}
# Longest value of each text field (model_name is a 200-character column).
TEXT_LIMITS: dict[str, int] = {"model": 200, "task": 500, "preset": 100, "output_dir": 4096}


def text_problem(value: str, *, max_length: int = MAX_TEXT) -> str | None:
    """Why ``value`` cannot be stored or used as text (NUL bytes, lone surrogates, too long); None if it can."""
    if len(value) > max_length:
        return f"must be at most {max_length} characters, got {len(value)}"
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate)"
    return None


def number_problem(value: float, *, low: float, high: float) -> str | None:
    """Why ``value`` is not a usable number in [low, high] (not finite, out of range); None if it is."""
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if value > high:
        return f"must be ≤ {_shown(high)}, got {_shown(value)}"
    if value < low:
        return f"must be ≥ {_shown(low)}, got {_shown(value)}"
    return None


def _shown(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _check_limits(cfg: TrainConfig) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        problem = None
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            problem = text_problem(value, max_length=TEXT_LIMITS.get(f.name, MAX_TEXT))
        elif isinstance(value, int | float):
            most = FIELD_MAX.get(f.name, MAX_INT if isinstance(value, int) else MAX_FLOAT)
            problem = number_problem(value, low=-most, high=most)
        elif f.name == "extra":
            problem = _extra_problem(value)
        if problem:
            raise ConfigError(f.name, problem)


def _extra_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be an object of notes, got {type(value).__name__}"
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # NaN/Infinity, or not JSON at all
        return f"must be plain JSON (finite numbers, strings, lists, objects): {exc}"
    if len(text.encode("utf-8", "surrogatepass")) > MAX_EXTRA_BYTES:
        return f"must be at most {MAX_EXTRA_BYTES} bytes as JSON"
    return next(filter(None, (text_problem(t, max_length=MAX_EXTRA_BYTES) for t in _strings(value))), None)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class ConfigError(ValueError):
    """An impossible configuration; ``field`` names the offending field (for form errors)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


# Fields whose value is one of a fixed set (the form shows them as selects).
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "algorithm": ALGORITHMS,
    "clamp_order": CLAMP_ORDERS,
    "estimator": ESTIMATORS,
    "normalize": NORMALIZERS,
    "loss_agg": LOSS_AGGS,
    "rollout_backend": ROLLOUT_BACKENDS,
    "q4_context": Q4_CONTEXTS,
    "dtype": DTYPES,
    "master_dtype": DTYPES,
    "parallelism": PARALLELISMS,
}


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train -------------------------------------------------------------------------
    model: str = "tiny-random"
    """Registry name (trainer.registry.MODEL_NAMES), a hub id, local:<name> (models folder), run:<id>@<step>
    (another run's checkpoint) or, on the command line, a local HF folder."""
    algorithm: str = "policy_split"
    """One of trainer.rl.algos.ALGORITHMS."""
    task: str = "arith"
    """Training task: a trainer.data.datasets name, data:<name> (data folder) or, on the command line, file:<path>."""
    # --- Policy Split (docs/method.md §4) ----------------------------------------------------------------
    eta: float = 0.03
    """HE-mode bonus scale η (paper 0.03). The released code added the bonus twice: use η=0.06, κ=1 to reproduce it."""
    eta_normal: float = 0.0
    """Normal-mode bonus η₂ (code sign convention: normal rows get −η₂·B^N; paper η′ = −η₂). 0 = pure GRPO."""
    alpha: float = 0.5
    """Weight of the own-context surprisal in b (docs/method.md §4.3), in [0, 1]."""
    kappa: float = 2.0
    """Clamp |bonus| ≤ |A|/κ; 0 disables the clamp."""
    clamp_order: str = "scale_then_clip"
    """scale_then_clip (released code) or clip_then_scale (paper eq. 3)."""
    estimator: str = "logprob"
    """Surprisal estimate of b: logprob (single sample) or entropy (full vocabulary)."""
    normalize: str = "zscore"
    """Normalisation of b within each (question, context) group: zscore | mean | none."""
    lowest_ratio: float = 0.0
    """Mask the lowest-b fraction of tokens of each group (0 = off)."""
    rollout_sharing: bool = True
    """Train every rollout under both contexts (docs/method.md §3.3); False = each mode on its own rollouts."""
    q4_context: str = "paper"
    """paper: HE context as a real system turn; released_code: the system prompt inside the user turn."""
    # --- baselines (docs/method.md §10) ------------------------------------------------------------------
    entropy_coef: float = 0.003
    """entropy_reg: loss −= coef·H."""
    entropy_adv_alpha: float = 0.4
    """entropy_adv: Â = A + min(α·H, |A|/κ)."""
    forking_top_ratio: float = 0.2
    """forking_tokens: keep the top fraction of tokens by entropy."""
    cov_ratio: float = 2e-4
    """clip_cov / kl_cov: fraction of tokens selected by covariance."""
    cov_lb: float = 1.0
    cov_ub: float = 5.0
    kl_cov_coef: float = 1.0
    # --- rollouts ------------------------------------------------------------------------------
    n: int = 4
    """Rollouts per mode per question (Policy Split generates 2n per question; GRPO n)."""
    questions_per_step: int = 4
    """Questions sampled per training step (S)."""
    mini_batches: int = 1
    """Optimizer steps per epoch of a training step: the step's rows are shuffled and split this many ways.
    The same for every algorithm, so Policy Split (4n rows per question) and GRPO take equal steps."""
    micro_batch_size: int = 8
    """Rows per forward/backward pass (gradient accumulation inside a mini-batch)."""
    ppo_epochs: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_prompt_length: int = 256
    max_new_tokens: int = 64
    rollout_backend: str = "transformers"
    enable_thinking: bool = False
    """Qwen3 thinking mode in the chat template; the math reward then requires </think>."""
    # --- vLLM rollouts (rollout_backend=vllm; trainer/rollout/vllm_engine.py) -----------------------
    vllm_gpu_memory_utilization: float = 0.3
    """Fraction of each GPU's memory the colocated vLLM engine may take (weights + activations + KV cache)."""
    vllm_max_model_len: int = 0
    """Longest prompt + response the engine accepts (0 = max_prompt_length + max_new_tokens)."""
    vllm_tensor_parallel_size: int = 1
    """GPUs one vLLM engine spans (> 1: each torchrun rank holds one shard, external launcher)."""
    vllm_enforce_eager: bool = False
    """Skip CUDA graph capture: slower decoding, faster start-up and a little less memory."""
    vllm_sleep: bool = True
    """Put the engine to sleep (weights to CPU, KV cache freed) while the trainer scores and updates."""
    vllm_seed: int = -1
    """Seed of the engine's sampler (-1 = the run's seed)."""
    preset: str = ""
    """The preset (trainer/presets) this config started from; informational, edits are kept."""
    # --- optimisation --------------------------------------------------------------------------
    lr: float = 1e-5
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float = 3.0
    loss_agg: str = "token-mean"
    steps: int = 10
    seed: int = 0
    # --- engine (precision, sharding, memory) --------------------------------------------------
    dtype: str = "float32"
    """Compute dtype of forward/backward. bfloat16/float16 keep float32 master weights and optimizer state."""
    master_dtype: str = "float32"
    """Dtype of the master weights and AdamW state; set it equal to dtype for pure low-precision training."""
    parallelism: str = "ddp"
    """With several processes (gpus > 1, torchrun): ddp replicas or fsdp (FSDP2) shards; none = one process only."""
    cpu_offload: bool = False
    """fsdp only: keep sharded parameters, gradients and optimizer state in CPU memory between uses."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of storing them."""
    logprob_chunk_tokens: int = 1024
    """Positions per chunk when log-probs and entropies are computed from the hidden states (0 = one chunk)."""
    max_tokens_per_micro_batch: int = 0
    """Token budget of one forward/backward pass; rows are length-bucketed to fit (0 = micro_batch_size rows)."""
    # --- bookkeeping ---------------------------------------------------------------------------
    samples_per_step: int = 2
    """Questions per step whose responses are emitted as samples (all of their rollouts, both modes)."""
    checkpoint_every: int = 5
    """Steps between checkpoints (a final one is always written); 0 = only the final one."""
    keep_checkpoints: int = 2
    eval_every: int = 0
    """Steps between held-out evaluations during training (0 = off)."""
    eval_questions: int = 16
    output_dir: str = "var/runs/cli"
    gpus: int = 0
    """GPUs for the run (0 = CPU); > 1 launches one process per GPU under torchrun (see parallelism)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes kept with the run; never read by the trainer."""

    def __post_init__(self) -> None:
        from trainer.registry import is_model_reference

        _check_limits(self)  # first: every later check may echo a value, or read it as a path
        for name, valid in FIELD_CHOICES.items():
            _one_of(name, getattr(self, name), valid)
        if not is_model_reference(self.model):
            raise ConfigError(
                "model", f"unknown model {self.model!r}: use a registry name, a hub id, local:<name> or run:<id>@<step>"
            )
        _check_task_name(self.task)
        _in_range("alpha", self.alpha, 0.0, 1.0)
        _in_range("lowest_ratio", self.lowest_ratio, 0.0, 1.0)
        _in_range("forking_top_ratio", self.forking_top_ratio, 0.0, 1.0, low_open=True)
        _in_range("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _in_range("cov_ratio", self.cov_ratio, 0.0, 1.0, low_open=True)
        for name in (
            "kappa",
            "eta",
            "lr",
            "weight_decay",
            "grad_clip",
            "clip_low",
            "clip_high",
            "entropy_coef",
            "entropy_adv_alpha",
            "kl_cov_coef",
            "top_k",
            "samples_per_step",
            "checkpoint_every",
            "eval_every",
            "gpus",
            "logprob_chunk_tokens",
            "max_tokens_per_micro_batch",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be ≥ 0, got {getattr(self, name)}")
        for name in (
            "n",
            "questions_per_step",
            "mini_batches",
            "micro_batch_size",
            "ppo_epochs",
            "max_prompt_length",
            "max_new_tokens",
            "steps",
            "keep_checkpoints",
            "eval_questions",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        self._check_vllm()
        if self.temperature <= 0:
            raise ConfigError("temperature", f"must be > 0, got {self.temperature}")
        if self.dual_clip and self.dual_clip <= 1:
            raise ConfigError("dual_clip", f"must be > 1 (or 0 to disable), got {self.dual_clip}")
        if self.cov_lb >= self.cov_ub:
            raise ConfigError("cov_lb", f"must be < cov_ub ({self.cov_ub}), got {self.cov_lb}")
        if not self.is_policy_split and self.n < 2:
            raise ConfigError("n", f"{self.algorithm} needs at least 2 rollouts per question to compare")
        if self.rows_per_step % self.mini_batches:
            raise ConfigError(
                "mini_batches",
                f"must divide the {self.rows_per_step} trained rows per step "
                f"({self.questions_per_step} questions × {self.rows_per_question} rows)",
            )
        if self.samples_per_step > self.questions_per_step:
            raise ConfigError("samples_per_step", f"must be ≤ questions_per_step ({self.questions_per_step})")
        self._check_engine()

    def _check_vllm(self) -> None:
        _in_range("vllm_gpu_memory_utilization", self.vllm_gpu_memory_utilization, 0.0, 1.0, low_open=True)
        if self.vllm_max_model_len < 0:
            raise ConfigError("vllm_max_model_len", f"must be ≥ 0 (0 = derived), got {self.vllm_max_model_len}")
        longest = self.max_prompt_length + self.max_new_tokens
        if self.vllm_max_model_len and self.vllm_max_model_len < longest:
            raise ConfigError(
                "vllm_max_model_len",
                f"must hold max_prompt_length + max_new_tokens = {longest}, got {self.vllm_max_model_len}",
            )
        tp = self.vllm_tensor_parallel_size
        if tp < 1:
            raise ConfigError("vllm_tensor_parallel_size", f"must be ≥ 1, got {tp}")
        if tp > 1 and (self.gpus < tp or self.gpus % tp):
            raise ConfigError("vllm_tensor_parallel_size", f"must divide the run's GPUs (gpus={self.gpus}), got {tp}")
        if self.vllm_seed < -1:
            raise ConfigError("vllm_seed", f"must be ≥ 0, or -1 for the run's seed, got {self.vllm_seed}")

    @property
    def vllm_model_len(self) -> int:
        """The engine's max model length: the configured one, else prompt + response limits."""
        return self.vllm_max_model_len or self.max_prompt_length + self.max_new_tokens

    def _check_engine(self) -> None:
        if self.master_dtype not in ("float32", self.dtype):
            raise ConfigError(
                "master_dtype",
                f"must be float32 (mixed precision) or {self.dtype} (pure {self.dtype}), got {self.master_dtype}",
            )
        if self.gpus > 1 and self.parallelism == "none":
            raise ConfigError("parallelism", f"gpus={self.gpus} runs {self.gpus} processes: choose ddp or fsdp")
        if self.cpu_offload and self.parallelism != "fsdp":
            raise ConfigError("cpu_offload", "needs parallelism=fsdp (FSDP2's CPU offload)")
        longest = self.max_prompt_length + self.max_new_tokens
        if self.max_tokens_per_micro_batch and self.max_tokens_per_micro_batch < longest:
            raise ConfigError(
                "max_tokens_per_micro_batch",
                f"must hold one full row (max_prompt_length + max_new_tokens = {longest}), "
                f"got {self.max_tokens_per_micro_batch}",
            )

    # --- derived values ------------------------------------------------------------------------
    @property
    def is_policy_split(self) -> bool:
        return self.algorithm == "policy_split"

    @property
    def modes(self) -> tuple[str, ...]:
        return ("normal", "he") if self.is_policy_split else ("normal",)

    @property
    def generated_per_question(self) -> int:
        return self.n * len(self.modes)

    @property
    def rows_per_question(self) -> int:
        """Trained (context, response) rows per question: 4n with sharing (docs/method.md §3.3), else 2n or n."""
        if self.is_policy_split and self.rollout_sharing:
            return 4 * self.n
        return self.generated_per_question

    @property
    def rows_per_step(self) -> int:
        return self.questions_per_step * self.rows_per_question

    @property
    def rows_per_mini_batch(self) -> int:
        return self.rows_per_step // self.mini_batches

    @property
    def optimizer_steps_per_step(self) -> int:
        return self.ppo_epochs * self.mini_batches

    @property
    def needs_scoring_pass(self) -> bool:
        """Whether a step scores its rollouts (no grad) before the update: always, except for a
        score-free algorithm updated once per step (on-policy), whose first forward is the old policy."""
        return self.algorithm not in SCORE_FREE_ALGORITHMS or self.optimizer_steps_per_step != 1

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field plus the schema version (``from_dict`` and ``from_stored`` read both)."""
        return {**dataclasses.asdict(self), SCHEMA_KEY: SCHEMA_VERSION}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from user input (CLI, API, forms): older schemas are migrated, unknown fields rejected."""
        values, _ = migrate_config(data, drop_unknown=False)
        known = {f.name: f for f in fields(cls)}
        return cls(**{k: _coerce(known[k], v) for k, v in values.items() if k != SCHEMA_KEY})

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> StoredConfig:
        """Build from a stored config (a run to clone or resume), never failing on what an older or
        newer version wrote: fields are migrated, unknown ones dropped and values this version
        rejects set back to their defaults, each with a notice saying so."""
        values, notices = migrate_config(data, drop_unknown=True)
        defaults = _defaults()
        while True:
            try:
                return StoredConfig(cls.from_dict(values), notices)
            except ConfigError as exc:
                if exc.field not in defaults or values.get(exc.field) == defaults[exc.field]:
                    # A constraint between fields that this field's default does not resolve.
                    return StoredConfig(cls(), [*notices, f"{exc}: the stored config was replaced by the defaults"])
                notices.append(f"{exc}: set back to the default {defaults[exc.field]!r}")
                values[exc.field] = defaults[exc.field]

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a YAML or JSON config file; an unreadable or malformed file is a one-line ConfigError."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError("config", f"cannot read {path}: {reason}") from None
        try:
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            kind = "JSON" if str(path).endswith(".json") else "YAML"
            raise ConfigError("config", f"{path} is not valid {kind}: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError("config", f"{path} must hold a mapping of field: value")
        return cls.from_dict(data)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Field docstrings (the string literal after each field), for CLI and form help texts."""
        return dict(_FIELD_HELP)


def config_values(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config without the ``_``-prefixed bookkeeping keys kept next to its fields.

    The web tier records facts about a run's history there (e.g. ``_resumed_from_step``); they are
    not settings, so the trainer, wandb and the run page never see them.
    """
    return {k: v for k, v in stored.items() if not k.startswith("_")}


# --- schema versions ----------------------------------------------------------------------------------
# Stored configs (runs in the database, config files) carry the schema version they were written
# with. A change that older configs cannot be read under (a renamed field, a field whose meaning
# changed) bumps SCHEMA_VERSION and adds the migration from the previous version to _MIGRATIONS;
# a plain new field with a default needs neither. Configs written before versioning are version 1.
SCHEMA_VERSION = 2
SCHEMA_KEY = "schema_version"


@dataclass(frozen=True)
class StoredConfig:
    """A stored config read by this version, and what had to change to read it (shown to the user)."""

    config: TrainConfig
    notices: list[str]


def _v1_mini_batches(data: dict[str, Any]) -> list[str]:
    """``mini_batch_size`` (trained rows per optimizer step) became ``mini_batches`` (optimizer steps
    per epoch), so that every algorithm takes the same number of steps whatever its rows."""
    if "mini_batch_size" not in data:
        return []
    rows = data.pop("mini_batch_size")
    if "mini_batches" in data:
        return [f"mini_batch_size={rows!r} dropped: the config also sets mini_batches"]
    try:
        probe = TrainConfig.from_dict({k: v for k, v in data.items() if k in _FIELD_NAMES and k != "mini_batches"})
        per_step = probe.rows_per_step
        wanted = max(1, per_step // int(rows))
    except (ConfigError, TypeError, ValueError):
        return [f"mini_batch_size={rows!r} dropped: could not be converted to mini_batches"]
    # The largest count of equal mini-batches that is not above what the rows meant.
    data["mini_batches"] = max(d for d in range(1, wanted + 1) if per_step % d == 0)
    return [f"mini_batch_size={rows!r} became mini_batches={data['mini_batches']} (optimizer steps per epoch)"]


# version v → the function that turns a version-v dict into version v + 1 (in place), returning notices.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], list[str]]] = {1: _v1_mini_batches}


def migrate_config(data: dict[str, Any], *, drop_unknown: bool) -> tuple[dict[str, Any], list[str]]:
    """A config dict of any schema version as this version's fields, plus notices of what changed.

    Keys starting with ``_`` (the web app's bookkeeping) are left out. Unknown fields raise
    ``ConfigError`` unless ``drop_unknown``, when they are dropped with a notice. Values are not
    validated here (``TrainConfig`` does that).
    """
    values = config_values(data)
    notices: list[str] = []
    raw_version = values.pop(SCHEMA_KEY, 1)
    version = raw_version if isinstance(raw_version, int) and not isinstance(raw_version, bool) else -1
    if not 1 <= version <= SCHEMA_VERSION:
        message = f"this version reads schema versions 1 to {SCHEMA_VERSION}, got {raw_version!r}"
        if not drop_unknown:
            raise ConfigError(SCHEMA_KEY, message)
        notices.append(f"{SCHEMA_KEY}: {message}; fields this version does not know are dropped")
        version = SCHEMA_VERSION
    for v in range(version, SCHEMA_VERSION):
        notices.extend(_MIGRATIONS[v](values))
    unknown = sorted(set(values) - set(_FIELD_NAMES))
    if unknown and not drop_unknown:
        raise ConfigError(unknown[0], f"unknown field; valid fields: {', '.join(sorted(_FIELD_NAMES))}")
    for name in unknown:
        notices.append(f"{name}={values.pop(name)!r} dropped: not a field of this version")
    return {**values, SCHEMA_KEY: SCHEMA_VERSION}, notices


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not dataclasses.MISSING}


def config_errors(data: dict[str, Any]) -> list[ConfigError]:
    """Every field the config rejects, not only the first (for forms that show all errors at once).

    Each offending field is set back to its default and the config rebuilt, until it builds or an
    error repeats (a constraint between fields that no default resolves).
    """
    defaults = _defaults()
    values = dict(data)
    errors: list[ConfigError] = []
    while True:
        try:
            TrainConfig.from_dict(values)
            return errors
        except ConfigError as exc:
            if any(e.field == exc.field for e in errors) or exc.field not in defaults:
                return errors if any(e.field == exc.field for e in errors) else [*errors, exc]
            errors.append(exc)
            values[exc.field] = defaults[exc.field]


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings (values parsed as YAML scalars) to a config."""
    data = config.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(key or "--set", f"expected key=value, got {item!r}")
        data[key.strip()] = yaml.safe_load(raw)
    return TrainConfig.from_dict(data)


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """Accept the natural JSON/YAML/form spellings of a field's type, rejecting the rest by field name."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "bool":
            return parse_bool(value) if isinstance(value, str) else bool(value)
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(f.name, f"expected {kind}, got {value!r}") from None
    return value


def check_resources(cfg: TrainConfig) -> None:
    """Check what the config names on *this* machine's filesystem (dataset files, model folders).

    Called by the trainer CLI on the host that will read them, before any model is loaded; the
    web host validates the config's syntax only (``__post_init__``), since the files it names live
    on the worker host. A missing name and one outside its roots get the same message
    (``trainer.references``). Raises ``ConfigError`` naming the field.
    """
    from trainer.references import NotFound, parse_model, parse_task, resolve_model_path, resolve_task_path

    task = parse_task(cfg.task)
    if task is not None and task.kind != "builtin":
        try:
            resolve_task_path(cfg.task)
        except NotFound as exc:
            raise ConfigError("task", str(exc)) from None
    model = parse_model(cfg.model)
    if model is not None and model.kind in ("local", "run", "path"):
        try:
            resolve_model_path(cfg.model)
        except NotFound as exc:
            raise ConfigError("model", str(exc)) from None


def _check_task_name(task: str) -> None:
    from trainer.references import parse_task

    if task.startswith("file:") and not task[5:].strip():
        raise ConfigError("task", "file: needs a path, e.g. file:data/train.jsonl")
    if parse_task(task) is None:
        raise ConfigError("task", f"unknown task {task!r}; valid: {', '.join(TASKS)}, data:<name> or file:<path>")


def _one_of(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(name, f"unknown value {value!r}; valid: {', '.join(valid)}")


def _in_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(name, f"must be in {bracket}{low}, {high}], got {value}")


def _read_field_help() -> dict[str, str]:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    helps: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        is_field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        is_doc = isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
        if is_field and is_doc:
            helps[node.target.id] = nxt.value.value
    return helps


_FIELD_HELP = _read_field_help()
_FIELD_NAMES = frozenset(f.name for f in fields(TrainConfig))
