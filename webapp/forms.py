"""Forms of the runs pages: they convert request data into domain values (TrainConfig, filters).

Validation rules live in ``trainer.config.TrainConfig`` only. The forms convert strings into
typed values, build the config, and turn a ``ConfigError(field, message)`` into an error on
the form field of the same name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from django import forms
from django.conf import settings
from django.http import QueryDict
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from trainer.choices import ALGORITHMS, PRIORITIES, TASKS, parse_bool
from trainer.config import FIELD_CHOICES, FIELD_SYMBOLS, ConfigError, TrainConfig, config_errors
from trainer.planner import MemoryPlan
from trainer.registry import MODEL_NAMES
from trainer.search import Distribution, Halving, SearchError, parse_distribution, sample_space
from webapp.models import RunStatus
from webapp.planning import run_plan
from webapp.selectors import (
    ALGORITHM_LABELS,
    CONFIG_FIELDS,
    DEFAULT_COLUMNS,
    RunFilters,
    field_kind,
    is_column,
    sort_expression,
)
from webapp.services import GridCell, config_cells, grid_cells

LABELS = {
    "kl_cov_coef": "KL-Cov coefficient",
    "ppo_epochs": "PPO epochs",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "cov_lb": "Clip-Cov lower bound",
    "cov_ub": "Clip-Cov upper bound",
    "cov_ratio": "Covariance token ratio",
    "entropy_adv_alpha": "Entropy-advantage α",
    "q4_context": "Q4 context",
    "dtype": "Compute dtype",
    "master_dtype": "Master weights dtype",
    "parallelism": "Data parallelism",
    "cpu_offload": "CPU offload (FSDP)",
    "gradient_checkpointing": "Gradient checkpointing",
    "logprob_chunk_tokens": "Log-prob chunk (tokens)",
    "max_tokens_per_micro_batch": "Micro-batch token budget",
    **FIELD_SYMBOLS,
    "eta": f"{FIELD_SYMBOLS['eta']} (HE bonus)",
    "eta_normal": f"{FIELD_SYMBOLS['eta_normal']} (normal-mode bonus)",
    "n": "Rollouts per mode (n)",
    "questions_per_step": "Questions per step",
    "mini_batches": "Mini-batches (optimizer steps)",
    "micro_batch_size": "Micro-batch size",
    "lr": "Learning rate",
    "max_new_tokens": "Max new tokens",
    "gpus": "GPUs",
    "seed": "Seed(s)",
    "extra": "Extra (JSON notes)",
}

# Shown instead of the trainer's docstring where that one speaks to developers.
UI_HELP = {
    "model": "A registry name (suggested as you type), a hub id such as Qwen/Qwen3-1.7B, local:<name> for a "
    "folder in the models folder, or run:<id>@<step> for a checkpoint of another run of this team.",
    "task": "A built-in task, data:<name>.jsonl for a dataset uploaded on your team's Datasets page (suggested "
    "as you type), or data:<name> for a dataset file or folder in the data folder (yours first, then the shared one).",
    "algorithm": "Policy Split trains a normal and a high-entropy mode in one model; the others are "
    "single-mode baselines.",
}

EXTRA_HELP = {
    "lr": "AdamW learning rate.",
    "steps": "Training steps (each generates, scores and updates once).",
    "temperature": "Sampling temperature of the rollouts.",
    "max_new_tokens": "Longest generated response, in tokens.",
    "seed": "One seed, or several separated by commas: one run per seed.",
}

SECTIONS: list[tuple[str, list[str]]] = [
    ("What to train", ["model", "algorithm", "task"]),
    ("Policy Split", ["eta", "eta_normal", "alpha", "kappa", "clamp_order", "estimator", "rollout_sharing"]),
    (
        "Rollouts and batches",
        ["n", "questions_per_step", "mini_batches", "micro_batch_size", "temperature", "max_new_tokens"],
    ),
    ("Optimisation", ["lr", "steps", "seed"]),
]
LAUNCH_FIELDS = ["name", "tags", "queue", "priority", "gpus", "wandb", "override_fit", "preset"]
# The worker chooses the run folder; it is never set from the web.
NOT_IN_FORM = {"output_dir"}
MAX_SEEDS = 50
MAX_GRID_RUNS = 200


class DatalistInput(forms.TextInput):
    """A text input that suggests known values but accepts anything (model paths, hub ids)."""

    def __init__(self, options: Iterable[str], attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.options = list(options)

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        list_id = f"{(attrs or {}).get('id') or name}-options"
        html = super().render(name, value, {**(attrs or {}), "list": list_id}, renderer)
        options = format_html_join("", '<option value="{}">', ((o,) for o in self.options))
        return format_html('{}<datalist id="{}">{}</datalist>', html, list_id, options)


def _default(name: str) -> Any:
    f = CONFIG_FIELDS[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _config_form_field(name: str) -> forms.Field:
    """A form field converting the request string to the config field's type (no range rules here)."""
    kind = field_kind(name)
    common: dict[str, Any] = {
        "label": LABELS.get(name, name.replace("_", " ").capitalize()),
        "help_text": UI_HELP.get(name) or TrainConfig.field_help().get(name) or EXTRA_HELP.get(name, ""),
        "initial": _default(name),
    }
    if name == "algorithm":
        return forms.ChoiceField(choices=[(a, ALGORITHM_LABELS.get(a, a)) for a in ALGORITHMS], **common)
    if name in FIELD_CHOICES:
        return forms.ChoiceField(choices=[(c, c) for c in FIELD_CHOICES[name]], **common)
    if name == "preset":  # set by the preset picker (a GET form above), kept on the run
        return forms.CharField(required=False, max_length=100, widget=forms.HiddenInput, **common)
    if name == "model":
        return forms.CharField(max_length=200, widget=DatalistInput(MODEL_NAMES), **common)
    if name == "task":
        return forms.CharField(max_length=500, widget=DatalistInput(TASKS), **common)
    if kind == "bool":
        return forms.BooleanField(required=False, **common)
    if kind == "int":
        return forms.IntegerField(**common)
    if kind == "float":
        return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **common)
    if kind == "dict":
        return forms.JSONField(required=False, widget=forms.Textarea(attrs={"rows": 2}), **common)
    return forms.CharField(max_length=500, **common)


def parse_seeds(raw: str) -> list[int]:
    parts = [p for p in re.split(r"[,\s]+", raw.strip()) if p]
    if not parts:
        raise forms.ValidationError("Give at least one seed.")
    try:
        seeds = list(dict.fromkeys(int(p) for p in parts))
    except ValueError:
        raise forms.ValidationError("Seeds are whole numbers separated by commas, e.g. 1, 2, 3.") from None
    if len(seeds) > MAX_SEEDS:
        raise forms.ValidationError(f"At most {MAX_SEEDS} seeds at once.")
    return seeds


class RunForm(forms.Form):
    """Every TrainConfig field plus where and how to launch; ``to_config()`` gives the validated config."""

    seed = forms.CharField(label=LABELS["seed"], initial="0", help_text=EXTRA_HELP["seed"])
    name = forms.CharField(max_length=200, required=False, help_text="Leave empty for a name built from the config.")
    tags = forms.CharField(max_length=500, required=False, help_text="Comma-separated, e.g. baseline, ablation-eta.")
    queue = forms.ChoiceField(help_text="The worker pool that runs it.")
    priority = forms.ChoiceField(
        choices=[(p, p) for p in PRIORITIES],
        initial="normal",
        help_text="Higher-priority runs start first in their pool; editable while the run waits.",
    )
    wandb = forms.BooleanField(
        label="Mirror to W&B", required=False, help_text="Also log metrics and samples to Weights & Biases."
    )
    override_fit = forms.BooleanField(
        label="Launch even if it does not fit",
        required=False,
        help_text="The memory planner's verdict is an estimate; tick to launch anyway.",
    )
    # A grid checks each of its cells instead of the base config.
    plans_each_cell = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in CONFIG_FIELDS:
            if name not in NOT_IN_FORM and name != "seed":
                self.fields[name] = _config_form_field(name)
        queue = self.fields["queue"]
        assert isinstance(queue, forms.ChoiceField)
        queue.choices = [(q, q) for q in settings.PSL_QUEUES]
        queue.initial = settings.CELERY_TASK_DEFAULT_QUEUE
        self._configs: list[TrainConfig] = []
        self.plan: MemoryPlan | None = None

    def suggest_tasks(self, references: Iterable[str]) -> None:
        """Offer the team's uploaded datasets beside the built-in tasks as the task is typed."""
        widget = self.fields["task"].widget
        assert isinstance(widget, DatalistInput)
        widget.options = [*TASKS, *references]

    # --- layout helpers for the template ---------------------------------------------------------
    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(title, [self[n] for n in names]) for title, names in SECTIONS]

    def launch_fields(self) -> list[forms.BoundField]:
        return [self[n] for n in LAUNCH_FIELDS]

    def advanced_fields(self) -> list[forms.BoundField]:
        shown = {n for _, names in SECTIONS for n in names} | set(LAUNCH_FIELDS) | NOT_IN_FORM
        return [self[n] for n in CONFIG_FIELDS if n not in shown]

    def advanced_has_errors(self) -> bool:
        return any(f.errors for f in self.advanced_fields())

    # --- conversion ------------------------------------------------------------------------------
    def clean_seed(self) -> list[int]:
        return parse_seeds(self.cleaned_data["seed"])

    def clean_tags(self) -> list[str]:
        return [t.strip()[:50] for t in self.cleaned_data["tags"].split(",") if t.strip()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if self.errors:  # some field did not even convert: the config cannot be built yet
            return data
        try:
            self._configs = [self._build(seed) for seed in data["seed"]]
        except ConfigError:
            for exc in config_errors({**self.config_data(), "seed": data["seed"][0]}):
                self.add_config_error(exc)
            return data
        if not self.plans_each_cell:
            self.plan = run_plan(self._configs[0], data["queue"])
            self.check_fit(self.plan)
        return data

    def check_fit(self, plan: MemoryPlan | None, label: str = "") -> None:
        """A launch that cannot fit is refused with the planner's reason unless overridden."""
        if plan is None or plan.fits is not False:
            return
        multi_host = any("host of this pool" in p for p in plan.problems)
        if multi_host or not self.cleaned_data.get("override_fit"):
            self.add_error("queue", f"{label}{plan.summary()}")

    def config_data(self) -> dict[str, Any]:
        """The converted config fields (seed excluded), ready for TrainConfig.from_dict."""
        data = {n: self.cleaned_data[n] for n in CONFIG_FIELDS if n in self.cleaned_data and n != "seed"}
        if data.get("extra") is None:
            data["extra"] = {}
        return data

    def _build(self, seed: int) -> TrainConfig:
        return TrainConfig.from_dict({**self.config_data(), "seed": seed})

    def add_config_error(self, exc: ConfigError) -> None:
        self.add_error(
            exc.field if exc.field in self.fields else None,
            exc.message if exc.field in self.fields else f"{exc.field}: {exc.message}",
        )

    def to_config(self) -> TrainConfig:
        """The validated config (of the first seed when several were given)."""
        return self._configs[0]

    def to_configs(self) -> list[TrainConfig]:
        """One validated config per seed."""
        return list(self._configs)


# --- ablation grids -----------------------------------------------------------------------------------

FACTORS_EXAMPLE = "eta = 0.01, 0.03, 0.1\nrollout_sharing = true, false\nseed = 1, 2, 3"
SEARCH_EXAMPLE = "lr = loguniform(1e-6, 1e-4)\nkappa = uniform(1, 4)\nmax_new_tokens = choice(64, 128)"
# The factors box's help and example per search mode (GridForm.search): the page swaps them when
# the mode changes (static/js/app.js, data-mode-from).
FACTORS_HELP = {
    "grid": "One config field per line with the values to try; every combination becomes a run.",
    "random": "One config field per line with a range to sample or values to pick from; each of the "
    "samples draws one value per line, and each draw becomes a run.",
}
FACTORS_PLACEHOLDER = {"grid": FACTORS_EXAMPLE, "random": SEARCH_EXAMPLE}
FACTOR_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")


def _typed(name: str, raw: str) -> Any:
    """A factor value as the config field's type; values are YAML scalars, as with the CLI's --set."""
    value = yaml.safe_load(raw) if raw else raw
    kind = field_kind(name)
    if kind == "float" and isinstance(value, str):  # YAML 1.1 reads 1e-5 as a string
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "str" and not isinstance(value, str):
        return raw
    return value


def _field_lines(text: str, errors: list[str], *, expected: str, repeated: str) -> Iterator[tuple[int, str, str]]:
    """(line number, field, raw right-hand side) of each ``field = …`` line of a grid or search box.

    Blank and ``#`` lines are skipped; a malformed line, an unknown field or a field named twice
    adds its message to ``errors`` instead (``expected`` and ``repeated`` word those messages).
    """
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = FACTOR_LINE.match(line)
        if not match:
            errors.append(f"Line {number}: expected “{expected}”, got “{line.strip()}”.")
            continue
        name, raw = match.groups()
        if name not in CONFIG_FIELDS or name in NOT_IN_FORM:
            errors.append(f"Line {number}: “{name}” is not a config field.")
        elif name in seen:
            errors.append(f"Line {number}: “{name}” is already {repeated} on an earlier line.")
        else:
            seen.add(name)
            yield number, name, raw


def parse_factor_lines(text: str) -> tuple[dict[str, list[Any]], list[str]]:
    """``name = v1, v2`` lines into {name: [typed values]}, plus one message per bad line."""
    factors: dict[str, list[Any]] = {}
    errors: list[str] = []
    for _, name, raw_values in _field_lines(text, errors, expected="field = value, value, …", repeated="varied"):
        values = [_typed(name, v.strip()) for v in raw_values.split(",") if v.strip()]
        factors[name] = list(dict.fromkeys(values)) if all(_hashable(v) for v in values) else values
    return factors, errors


def parse_space_lines(text: str) -> tuple[dict[str, Distribution], list[str]]:
    """``name = loguniform(1e-6, 1e-4)`` (or ``name = v1, v2``) lines into a random-search space."""
    space: dict[str, Distribution] = {}
    errors: list[str] = []
    expected = "field = uniform(low, high)” or “field = value, value, …"
    for number, name, raw in _field_lines(text, errors, expected=expected, repeated="searched"):
        try:
            dist = parse_distribution(raw)
        except SearchError as exc:
            errors.append(f"Line {number}: {name}: {exc}")
            continue
        if dist.kind == "choice":  # values typed as the field's type, as on a grid line
            inner = raw[raw.index("(") + 1 : raw.rindex(")")] if "(" in raw else raw
            dist = Distribution("choice", tuple(_typed(name, v.strip()) for v in inner.split(",") if v.strip()))
        space[name] = dist
    return space, errors


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class GridForm(RunForm):
    """A base config plus factor lines; ``cells`` holds every combination with its validation result."""

    plans_each_cell = True

    search = forms.ChoiceField(
        required=False,
        choices=[("grid", "Grid: every combination"), ("random", "Random search: sample the ranges")],
        initial="grid",
        help_text="Random search draws configs from ranges: uniform(a, b), loguniform(a, b), randint(a, b) "
        "or a list of values.",
    )
    factors = forms.CharField(
        widget=forms.Textarea(
            attrs={
                "rows": 4,
                "class": "mono",
                "placeholder": FACTORS_EXAMPLE,
                "data-mode-from": "id_search",
                **{f"data-help-{mode}": text for mode, text in FACTORS_HELP.items()},
                **{f"data-placeholder-{mode}": text for mode, text in FACTORS_PLACEHOLDER.items()},
            }
        ),
        help_text=FACTORS_HELP["grid"],
    )
    samples = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_GRID_RUNS,
        initial=8,
        help_text="Random search: how many configs to draw.",
    )
    search_seed = forms.IntegerField(
        required=False, initial=0, label="Search seed", help_text="The same seed draws the same configs."
    )
    halving = forms.BooleanField(
        required=False,
        label="Successive halving",
        help_text="Stop the worst runs at the rungs: a run whose metric there is worse than the best "
        "1/reduction of the runs that reached the rung before it is cancelled (ASHA).",
    )
    halving_metric = forms.CharField(initial="train/reward", label="Halving metric", required=False)
    halving_mode = forms.ChoiceField(
        required=False,
        choices=[("max", "higher is better"), ("min", "lower is better")],
        initial="max",
        label="Better is",
    )
    halving_rungs = forms.CharField(
        initial="", required=False, label="Rungs (steps)", help_text="Steps at which runs are compared, e.g. 2, 4."
    )
    halving_reduction = forms.IntegerField(
        required=False, min_value=2, initial=2, label="Reduction", help_text="Keep the best 1/n."
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].required = True
        self.fields["name"].label = "Study name"
        self.fields["name"].help_text = "Runs are named “study: factor=value, …”."
        mode = self["search"].value() if self["search"].value() in FACTORS_HELP else "grid"
        self.fields["factors"].help_text = FACTORS_HELP[mode]
        self.fields["factors"].widget.attrs["placeholder"] = FACTORS_PLACEHOLDER[mode]
        self.cells: list[GridCell] | None = None
        self.cell_plans: list[MemoryPlan | None] = []
        self.space: dict[str, Distribution] = {}
        self.halving_plan: Halving | None = None

    def preview_rows(self) -> list[tuple[GridCell, MemoryPlan | None]]:
        return list(zip(self.cells or [], self.cell_plans or [None] * len(self.cells or []), strict=True))

    @property
    def is_random(self) -> bool:
        return self.cleaned_data.get("search") == "random"

    def clean_factors(self) -> dict[str, list[Any]]:
        if self.is_random:
            self.space, errors = parse_space_lines(self.cleaned_data["factors"])
            factors: dict[str, list[Any]] = {}
        else:
            factors, errors = parse_factor_lines(self.cleaned_data["factors"])
        if errors:
            raise forms.ValidationError(errors)
        if not factors and not self.space:
            raise forms.ValidationError("Give at least one factor line.")
        return factors

    def clean_halving_rungs(self) -> tuple[int, ...]:
        raw = [r.strip() for r in self.cleaned_data["halving_rungs"].split(",") if r.strip()]
        if not all(r.isdigit() for r in raw):
            raise forms.ValidationError("Give steps as whole numbers separated by commas, e.g. 2, 4.")
        return tuple(int(r) for r in raw)

    def halving_settings(self) -> Halving | None:
        """The successive-halving settings, or None (errors are added to the form's fields)."""
        data = self.cleaned_data
        if not data.get("halving"):
            return None
        rungs = data.get("halving_rungs") or ()
        if rungs and data.get("steps") and rungs[-1] >= data["steps"]:
            self.add_error("halving_rungs", f"Rungs must come before the last step ({data['steps']}).")
            return None
        try:
            return Halving(
                data.get("halving_metric") or "",
                rungs,
                data.get("halving_mode") or "max",
                data.get("halving_reduction") or 2,
            )
        except SearchError as exc:
            field = "halving_metric" if "metric" in str(exc) else "halving_rungs"
            self.add_error(field, str(exc))
            return None

    @property
    def _samples(self) -> int:
        return self.cleaned_data.get("samples") or 8

    @property
    def _search_seed(self) -> int:
        return self.cleaned_data.get("search_seed") or 0

    def search_settings(self) -> dict[str, Any]:
        """What the study stores about how its runs were chosen (Study.search)."""
        out: dict[str, Any] = {}
        if self.is_random:
            space = {name: str(dist) for name, dist in self.space.items()}
            out.update(kind="random", space=space, samples=self._samples, seed=self._search_seed)
        if self.halving_plan is not None:
            out["halving"] = self.halving_plan.to_dict()
        return out

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if self.errors:
            return data
        self.halving_plan = self.halving_settings()
        if self.errors:
            return data
        if self.is_random:
            return self._clean_random(data)
        factors = dict(data["factors"])
        seeds = data["seed"]
        if len(seeds) > 1 and "seed" in factors:
            self.add_error("seed", "Give several seeds either here or as a “seed = …” factor line, not both.")
            return data
        if len(seeds) > 1:
            factors["seed"] = seeds
        data["factors"] = factors
        size = 1
        for values in factors.values():
            size *= len(values)
        if size > MAX_GRID_RUNS:
            self.add_error(
                "factors",
                f"This grid has {size} runs; the limit is {MAX_GRID_RUNS}. "
                "Drop some values or split it into several studies.",
            )
            return data
        self._check_values(factors)
        if not self.errors:
            self.cells = grid_cells(self.to_config(), factors)
            self.cell_plans = [run_plan(c.config, data["queue"]) if c.config else None for c in self.cells]
            misfits = [(k, plan) for k, plan in enumerate(self.cell_plans, 1) if plan and plan.fits is False]
            if misfits:
                k, plan = misfits[0]
                self.check_fit(plan, label=f"{len(misfits)} of {len(self.cells)} runs do not fit; run {k}: ")
            bad = sum(1 for c in self.cells if c.error)
            if bad:
                self.add_error(None, f"{bad} of {len(self.cells)} runs have an invalid config (see the preview).")
        return data

    def _clean_random(self, data: dict[str, Any]) -> dict[str, Any]:
        """Draw the configs (times the seeds) and validate each one, as a grid's cells are."""
        seeds = data["seed"]
        if len(seeds) > 1 and "seed" in self.space:
            self.add_error("seed", "Give several seeds either here or as a “seed = …” line, not both.")
            return data
        points = sample_space(self.space, self._samples, seed=self._search_seed)
        if len(seeds) > 1:
            points = [{**p, "seed": s} for p in points for s in seeds]
        if len(points) > MAX_GRID_RUNS:
            self.add_error("samples", f"This search has {len(points)} runs; the limit is {MAX_GRID_RUNS}.")
            return data
        data["factors"] = {name: list(dict.fromkeys(p[name] for p in points)) for name in points[0]}
        self.cells = config_cells(self.to_config(), points)
        self.cell_plans = [run_plan(c.config, data["queue"]) if c.config else None for c in self.cells]
        bad = sum(1 for c in self.cells if c.error)
        if bad:
            self.add_error(None, f"{bad} of {len(self.cells)} runs have an invalid config (see the preview).")
        return data

    def _check_values(self, factors: dict[str, list[Any]]) -> None:
        base = {**self.config_data(), "seed": self.cleaned_data["seed"][0]}
        for name, values in factors.items():
            for value in values:
                try:
                    TrainConfig.from_dict({**base, name: value})
                except ConfigError as exc:
                    if exc.field == name:
                        self.add_error("factors", f"{name} = {value}: {exc.message}")

    def to_config(self) -> TrainConfig:
        return TrainConfig.from_dict({**self.config_data(), "seed": self.cleaned_data["seed"][0]})


# --- runs list query string -------------------------------------------------------------------------

WHERE_CLAUSE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")


class RunListForm(forms.Form):
    """The runs list query string: filters, sort, columns and page, converted to selector arguments."""

    q = forms.CharField(required=False, max_length=200)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *RunStatus.choices])
    algorithm = forms.ChoiceField(
        required=False, choices=[("", "Any algorithm"), *((a, ALGORITHM_LABELS.get(a, a)) for a in ALGORITHMS)]
    )
    tag = forms.CharField(required=False, max_length=50)
    where = forms.CharField(required=False, max_length=500)
    sort = forms.CharField(required=False, max_length=100)

    def __init__(self, data: QueryDict, *args: Any, **kwargs: Any) -> None:
        super().__init__(data, *args, **kwargs)
        self.query = data

    def clean_sort(self) -> str:
        sort = self.cleaned_data["sort"] or "-created"
        if sort_expression(sort.lstrip("-")) is None:
            raise forms.ValidationError(f"Cannot sort by “{sort.lstrip('-')}”.")
        return sort

    def clean_where(self) -> dict[str, list[Any]]:
        clauses: dict[str, list[Any]] = {}
        for part in re.split(r"[;\s]+", self.cleaned_data["where"].strip()):
            if not part:
                continue
            match = WHERE_CLAUSE.match(part)
            if not match:
                raise forms.ValidationError(f"“{part}” is not field=value.")
            clauses.update(self._config_filter(*match.groups()))
        return clauses

    def _config_filter(self, name: str, raw: str) -> dict[str, list[Any]]:
        if name not in CONFIG_FIELDS:
            raise forms.ValidationError(f"“{name}” is not a config field.")
        values = []
        for item in (v.strip() for v in raw.split(",")):
            if item:
                values.append(_filter_value(name, item))
        return {name: values}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        config = dict(data.get("where") or {})
        for param in self.query:
            if param.startswith("cfg."):
                try:
                    config.update(self._config_filter(param[4:], str(self.query.get(param, ""))))
                except forms.ValidationError as exc:
                    self.add_error(None, exc)
        data["config"] = config
        return data

    def filters(self) -> RunFilters:
        """The filters that converted; an invalid one is reported by the form and left out."""
        self.is_valid()
        d = self.cleaned_data
        return RunFilters(
            status=d.get("status", ""),
            tag=d.get("tag", ""),
            algorithm=d.get("algorithm", ""),
            q=d.get("q", ""),
            config=d.get("config", {}),
        )

    def sort_value(self) -> str:
        self.is_valid()
        return self.cleaned_data.get("sort") or "-created"

    def columns(self) -> list[str]:
        """Chosen columns: repeated ``cols`` params or one comma-separated value; defaults otherwise."""
        raw = [c for value in self.query.getlist("cols") for c in value.split(",")]
        chosen = [c.strip() for c in raw if is_column(c.strip())]
        chosen = list(dict.fromkeys(chosen))
        if chosen and "name" not in chosen:
            chosen.insert(0, "name")
        return chosen or list(DEFAULT_COLUMNS)


def _filter_value(name: str, raw: str) -> Any:
    kind = field_kind(name)
    try:
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind == "bool":
            return parse_bool(raw)
    except ValueError:
        raise forms.ValidationError(f"{name}: “{raw}” is not a valid {kind}.") from None
    return raw
