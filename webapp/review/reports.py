"""Tables of a comparison or a study, and their CSV / Markdown / LaTeX export.

Three layers, each plain data in, plain data out:

* grouping: runs that differ only in their seed form one group (one table row, one chart line
  with a band across seeds);
* tables: the final-metrics table (a named summary of chosen keys: by default the mean of the last
  k logged steps, or the last logged value; see :class:`SummaryRule`) and the
  paper-style evaluation table (docs/method.md §9: rows = methods, Acc / Ent per benchmark, Average,
  a "+ HE prompt" row for Policy Split, deltas and significance vs a baseline);
* export: any table as CSV, Markdown or booktabs LaTeX.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from django.db.models import Avg, Case, FloatField, Value, When

from trainer.config import FIELD_SYMBOLS, TrainConfig
from trainer.data.benchmarks import benchmark_title
from trainer.search import SearchError, parse_distribution
from webapp.models import DEFAULT_SUMMARY_K, EvalResult, EvalStatus, Evaluation, Mode, Run, SummaryKind
from webapp.review.stats import DEFAULT_TEST, SIG_LEVELS, TESTS, PairedResult, paired_question_test

# --- grouping ---------------------------------------------------------------------------------------

CONFIG_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
# Fields that never define a method: seeds are what a group averages over.
NON_FACTOR_FIELDS = frozenset({"seed", "output_dir", "extra"})
# Row names as in the paper's Table 1.
METHOD_LABELS = {
    "policy_split": "Policy Split",
    "grpo": "GRPO",
    "forking_tokens": "w/ Forking Token Only",
    "clip_cov": "w/ Clip-Cov",
    "kl_cov": "w/ KL-Cov",
    "eda": "w/ Ent Driven Adv",
    "entropy_reg": "w/ Ent Regularization",
    "entropy_adv": "w/ Ent Advantage",
}
HE_ROW_LABEL = "+ HE prompt"


def method_label(algorithm: str) -> str:
    return METHOD_LABELS.get(algorithm, algorithm)


def config_value(run: Run, name: str) -> Any:
    if name == "algorithm":
        return run.algorithm
    if name == "seed":
        return run.seed
    return run.config.get(name)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def varied_fields(runs: Sequence[Run], *, exclude: Iterable[str] = NON_FACTOR_FIELDS) -> list[str]:
    """Config fields whose value differs between the runs, in TrainConfig order."""
    skip = set(exclude)
    return [
        name
        for name in CONFIG_FIELD_NAMES
        if name not in skip and len({_hashable(config_value(r, name)) for r in runs}) > 1
    ]


@dataclass
class RunGroup:
    """Runs of one method (same values of the group-by fields); a single run when not grouping."""

    key: tuple[Any, ...]
    label: str
    runs: list[Run]
    color: str = ""  # set by the page: the group's line colour, reused by its table row

    @property
    def run_ids(self) -> list[int]:
        return [r.pk for r in self.runs]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)

    @property
    def is_policy_split(self) -> bool:
        return any(r.algorithm == "policy_split" for r in self.runs)

    def contains(self, run_id: int | None) -> bool:
        return run_id is not None and run_id in self.run_ids


def group_label(by: Sequence[str], key: Sequence[Any]) -> str:
    parts = []
    for name, value in zip(by, key, strict=True):
        if name == "algorithm":
            parts.append(method_label(str(value)))
        else:
            parts.append(f"{FIELD_SYMBOLS.get(name, name)}={format_value(value)}")
    return ", ".join(parts)


def group_runs(runs: Sequence[Run], by: Sequence[str]) -> list[RunGroup]:
    """Group runs by the values of ``by`` (first-appearance order); ``by=[]`` keeps one group per run."""
    if not by:
        return [RunGroup((r.pk,), r.name, [r]) for r in runs]
    grouped: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        grouped.setdefault(tuple(_hashable(config_value(run, f)) for f in by), []).append(run)
    return [RunGroup(key, group_label(by, key), members) for key, members in grouped.items()]


def study_group_fields(factors: Mapping[str, Any], runs: Sequence[Run]) -> list[str]:
    """What makes a method in a study: its declared factors except seed, else whatever varies."""
    declared = [f for f in factors if f in CONFIG_FIELD_NAMES and f not in NON_FACTOR_FIELDS]
    return declared or varied_fields(runs) or ["algorithm"]


def group_of(groups: Sequence[RunGroup], run_id: int | None) -> RunGroup | None:
    return next((g for g in groups if g.contains(run_id)), None)


# --- bands across seeds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """A group's curve: per aligned step, the mean across runs and the spread (n = runs with a value)."""

    steps: list[float]
    mean: list[float]
    low: list[float]  # min across runs
    high: list[float]  # max across runs
    std: list[float]  # sample std across runs (0 with one run)
    n: list[int]

    def bounds(self, kind: str) -> tuple[list[float], list[float]]:
        """The band to draw: ``minmax`` or ``std`` (mean ± one standard deviation)."""
        if kind == "std":
            return (
                [m - s for m, s in zip(self.mean, self.std, strict=True)],
                [m + s for m, s in zip(self.mean, self.std, strict=True)],
            )
        return self.low, self.high


def seed_band(series: Sequence[tuple[Sequence[int], Sequence[float]]], *, max_points: int = 500) -> Band:
    """Align runs' (steps, values) by step and summarise across runs.

    When the union of steps fits in ``max_points`` the alignment is exact; otherwise steps are
    cut into equal-width bins, each run contributes its mean within a bin, and the bin's x is
    the mean step of the points in it.
    """
    all_steps = sorted({s for steps, _ in series for s in steps})
    if not all_steps:
        return Band([], [], [], [], [], [])
    exact = len(all_steps) <= max_points
    lo, span = all_steps[0], all_steps[-1] - all_steps[0] + 1

    def bin_of(step: int) -> int:
        return step if exact else (step - lo) * max_points // span

    per_bin: dict[int, list[float]] = defaultdict(list)
    bin_steps: dict[int, list[int]] = defaultdict(list)
    for steps, values in series:
        own: dict[int, list[float]] = defaultdict(list)
        for step, value in zip(steps, values, strict=True):
            own[bin_of(step)].append(value)
            bin_steps[bin_of(step)].append(step)
        for b, vals in own.items():
            per_bin[b].append(statistics.fmean(vals))
    out = Band([], [], [], [], [], [])
    for b in sorted(per_bin):
        vals = per_bin[b]
        out.steps.append(b if exact else statistics.fmean(bin_steps[b]))
        out.mean.append(statistics.fmean(vals))
        out.low.append(min(vals))
        out.high.append(max(vals))
        out.std.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        out.n.append(len(vals))
    return out


# --- the final-metrics table -------------------------------------------------------------------------

# Which way is "better" for a metric key, by substring; anything unlisted is neutral (no colour).
LOWER_IS_BETTER = ("loss", "timing/", "grad_norm", "truncated", "peak_rss", "frac_zero_adv")
HIGHER_IS_BETTER = ("accuracy", "reward", "tokens_per_s", "pass")
NEUTRAL = ("reward_std", "entropy", "kl", "length")


def metric_direction(key: str) -> int:
    """+1 when higher is better, −1 when lower is better, 0 when neither (entropy, KL, lengths)."""
    if any(p in key for p in NEUTRAL):
        return 0
    if any(p in key for p in LOWER_IS_BETTER):
        return -1
    if any(p in key for p in HIGHER_IS_BETTER):
        return 1
    return 0


def fmt_number(value: float | None, *, signed: bool = False, digits: int = 4) -> str:
    """Significant digits, with a real minus sign for signed values (deltas)."""
    if value is None:
        return "–"
    text = f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"
    return text.replace("-", "−") if signed else text


@dataclass
class FinalCell:
    value: float | None
    std: float | None
    n: int
    delta: float | None = None
    tone: str = ""  # "pos" (better than the baseline), "neg" (worse) or "" (neutral / no baseline)

    @property
    def text(self) -> str:
        return fmt_number(self.value)

    @property
    def std_text(self) -> str:
        return fmt_number(self.std, digits=2) if self.std is not None else ""

    @property
    def delta_text(self) -> str:
        return fmt_number(self.delta, signed=True, digits=3) if self.delta is not None else ""


@dataclass
class FinalRow:
    group: RunGroup
    cells: list[FinalCell]
    is_baseline: bool = False


@dataclass
class FinalTable:
    keys: list[str]
    rows: list[FinalRow]
    baseline: RunGroup | None
    rule: SummaryRule = field(default_factory=lambda: SummaryRule())

    @property
    def title(self) -> str:
        seeds = ", mean ± std across seeds" if self.grouped else ""
        return f"Final metrics ({self.rule.label} of each run{seeds})"

    @property
    def grouped(self) -> bool:
        return any(len(r.group.runs) > 1 for r in self.rows)


MAX_SUMMARY_K = 1000


@dataclass(frozen=True)
class SummaryRule:
    """How a run's curve of a key becomes the one number a final-metrics table shows.

    ``mean_last``: the mean of the last ``k`` logged steps (the default, k = 5: one step is noise);
    ``last``: the last logged value (``Run.summary``). Tables, headers and exports name the rule.
    """

    kind: str = SummaryKind.MEAN_LAST
    k: int = DEFAULT_SUMMARY_K

    @property
    def label(self) -> str:
        if self.kind == SummaryKind.LAST:
            return "last logged value"
        return f"mean of the last {self.k} logged steps" if self.k > 1 else "last logged value"

    @classmethod
    def from_query(cls, qd: Mapping[str, Any], default: SummaryRule | None = None) -> SummaryRule:
        """``?summary=mean_last|last`` and ``?k=`` over ``default``; malformed values keep the default."""
        base = default or cls()
        kind = qd.get("summary", "") if qd.get("summary", "") in SummaryKind.values else base.kind
        raw = str(qd.get("k", "")).strip()
        k = int(raw) if raw.isdigit() and 1 <= int(raw) <= MAX_SUMMARY_K else base.k
        return cls(kind, k)

    def values(self, runs: Sequence[Run], keys: Sequence[str]) -> dict[tuple[int, str], float]:
        """{(run id, key): summary} of the runs' keys under this rule."""
        if self.kind == SummaryKind.MEAN_LAST and self.k > 1:
            from webapp.selectors import last_k_means

            return last_k_means(runs, keys, self.k)
        return {
            (r.pk, key): float(v)
            for r in runs
            for key in keys
            if isinstance(v := r.summary.get(key), int | float) and not isinstance(v, bool) and math.isfinite(v)
        }


def _summary_cell(group: RunGroup, key: str, values: Mapping[tuple[int, str], float]) -> FinalCell:
    found = [values[(r.pk, key)] for r in group.runs if (r.pk, key) in values]
    values_ = [v for v in found if math.isfinite(v)]
    if not values_:
        return FinalCell(None, None, 0)
    std = statistics.stdev(values_) if len(values_) > 1 else None
    return FinalCell(statistics.fmean(values_), std, len(values_))


def final_table(
    groups: Sequence[RunGroup], keys: Sequence[str], baseline: RunGroup | None, *, rule: SummaryRule | None = None
) -> FinalTable:
    rule = rule or SummaryRule()
    values = rule.values([r for g in groups for r in g.runs], keys)
    base = {k: _summary_cell(baseline, k, values) for k in keys} if baseline else {}
    rows = []
    for group in groups:
        is_base = baseline is not None and group.key == baseline.key
        cells = []
        for key in keys:
            cell = _summary_cell(group, key, values)
            ref = base.get(key)
            if not is_base and ref and ref.value is not None and cell.value is not None:
                cell.delta = cell.value - ref.value
                scale = max(abs(ref.value), abs(cell.value), 1e-12)
                better = metric_direction(key) * cell.delta
                if abs(cell.delta) > 1e-9 * scale and better:
                    cell.tone = "pos" if better > 0 else "neg"
            cells.append(cell)
        rows.append(FinalRow(group, cells, is_base))
    return FinalTable(list(keys), rows, baseline, rule)


# --- the paper-style evaluation table ---------------------------------------------------------------

QuestionKey = tuple[str, str]  # (benchmark, question_id)
PAPER_SUMMARY = "held-out evaluation of each run's latest evaluated checkpoint"
# Paper column order first (docs/method.md §9), then anything else alphabetically.
BENCHMARK_ORDER = ("math", "aime", "gpqa", "mmlu")


def benchmark_sort_key(name: str) -> tuple[int, str]:
    lowered = name.lower()
    rank = next((i for i, prefix in enumerate(BENCHMARK_ORDER) if prefix in lowered), len(BENCHMARK_ORDER))
    return rank, lowered


def format_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class PaperCell:
    acc: float | None  # percent
    ent: float | None  # bits
    n_evals: int = 0
    test: PairedResult | None = None

    @property
    def mark(self) -> str:
        return self.test.mark if self.test else ""

    @property
    def title(self) -> str:
        """Hover text: the per-benchmark delta vs the baseline."""
        if not self.test:
            return ""
        t = self.test
        return (
            f"Δ {100 * t.diff:+.2f} pts [{100 * t.ci_low:+.2f}, {100 * t.ci_high:+.2f}], "
            f"p = {format_p(t.p_value)}, n = {t.n} questions"
        )


@dataclass
class PaperRow:
    label: str
    kind: str  # "original" | "method" | "he"
    cells: list[PaperCell]
    group: RunGroup | None = None
    steps: list[int] = field(default_factory=list)
    is_baseline: bool = False
    test: PairedResult | None = None
    best: bool = False
    questions: dict[QuestionKey, float] = field(default_factory=dict, repr=False)
    run_ids: set[int] = field(default_factory=set)  # the runs whose evaluations the row averages

    @property
    def avg_acc(self) -> float | None:
        """Mean of the benchmark columns, as in the paper; only when every column has a value."""
        values = [c.acc for c in self.cells]
        return statistics.fmean(values) if values and None not in values else None  # type: ignore[arg-type]

    @property
    def avg_ent(self) -> float | None:
        values = [c.ent for c in self.cells]
        return statistics.fmean(values) if values and None not in values else None  # type: ignore[arg-type]

    @property
    def n_runs(self) -> int:
        """Runs (seeds) with evaluations in this row; a group's unfinished seeds do not count."""
        return len(self.run_ids)

    @property
    def step_text(self) -> str:
        if not self.steps:
            return ""
        lo, hi = min(self.steps), max(self.steps)
        return f"step {lo}" if lo == hi else f"steps {lo}–{hi}"

    @property
    def delta(self) -> float | None:
        return 100 * self.test.diff if self.test else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return (100 * self.test.ci_low, 100 * self.test.ci_high) if self.test else None

    @property
    def mark(self) -> str:
        return self.test.mark if self.test else ""

    @property
    def delta_text(self) -> str:
        return _signed_pct(self.delta) if self.delta is not None else ""

    @property
    def ci_text(self) -> str:
        return f"[{_signed_pct(self.ci[0])}, {_signed_pct(self.ci[1])}]" if self.ci else ""

    @property
    def p_text(self) -> str:
        return format_p(self.test.p_value) if self.test else ""

    @property
    def delta_tone(self) -> str:
        if not self.test or not self.mark:
            return ""
        return "pos" if self.test.diff > 0 else "neg"


@dataclass
class PaperTable:
    benchmarks: list[str]
    rows: list[PaperRow]
    test: str
    baseline_label: str = ""

    @property
    def titles(self) -> list[str]:
        """Column headings as in the paper (MATH-500, AIME-24/25, …); exports for machines keep the keys."""
        return [benchmark_title(b) for b in self.benchmarks]

    @property
    def test_description(self) -> str:
        return TESTS[self.test]

    @property
    def summary(self) -> str:
        """What each cell summarises (the header and the exports say it)."""
        return PAPER_SUMMARY

    @property
    def has_baseline(self) -> bool:
        return any(r.is_baseline for r in self.rows)

    def legend(self) -> list[str]:
        notes = [
            "Acc = accuracy (%) averaged over the k samples per question; "
            "Ent = mean token entropy (bits). Average = mean of the benchmark columns."
        ]
        if self.has_baseline:
            marks = ", ".join(f"{mark} p < {level:g}" for level, mark in reversed(SIG_LEVELS))
            notes.append(f"Deltas and significance vs {self.baseline_label} ({marks}): {self.test_description}.")
        return notes


def _latest_evaluations(
    run_ids: Sequence[int],
) -> tuple[dict[tuple[int, str, str], Evaluation], dict[tuple[int, str, str], Evaluation]]:
    """Succeeded evaluations per (run, benchmark, mode): the latest trained checkpoint, and step 0."""
    trained: dict[tuple[int, str, str], Evaluation] = {}
    original: dict[tuple[int, str, str], Evaluation] = {}
    qs = Evaluation.objects.filter(run_id__in=list(run_ids), status=EvalStatus.SUCCEEDED)
    qs = qs.order_by("step", "id")
    for ev in qs.only("id", "run_id", "step", "benchmark", "mode", "metrics"):
        (original if ev.step == 0 else trained)[(ev.run_id, ev.benchmark, ev.mode)] = ev
    return trained, original


def question_accuracy(evaluation_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """Per evaluation, per question: the fraction of its k samples that are correct (one GROUP BY)."""
    correct = Case(When(score__gt=0.5, then=Value(1.0)), default=Value(0.0), output_field=FloatField())
    rows = (
        EvalResult.objects.filter(evaluation_id__in=list(evaluation_ids))
        .values("evaluation_id", "question_id")
        .annotate(acc=Avg(correct))
        .order_by()
    )
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for row in rows:
        out[row["evaluation_id"]][row["question_id"]] = float(row["acc"])
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _eval_accuracy(ev: Evaluation, per_question: Mapping[str, float]) -> float | None:
    """The evaluator's accuracy (a fraction), else the mean of the per-question accuracies."""
    acc = _number(ev.metrics.get("accuracy"))
    if acc is None and per_question:
        acc = statistics.fmean(per_question.values())
    return acc


def _build_row(
    label: str,
    kind: str,
    evals: Mapping[str, list[Evaluation]],
    benchmarks: Sequence[str],
    per_q: Mapping[int, Mapping[str, float]],
    group: RunGroup | None = None,
) -> PaperRow:
    """One row from each benchmark's evaluations (one per seed): seeds are averaged per question."""
    row = PaperRow(label, kind, [], group=group)
    for bench in benchmarks:
        evs = evals.get(bench, [])
        accs = [a for ev in evs if (a := _eval_accuracy(ev, per_q.get(ev.pk, {}))) is not None]
        ents = [e for ev in evs if (e := _number(ev.metrics.get("entropy_bits"))) is not None]
        row.cells.append(
            PaperCell(
                100 * statistics.fmean(accs) if accs else None, statistics.fmean(ents) if ents else None, len(evs)
            )
        )
        pooled: dict[str, list[float]] = defaultdict(list)
        for ev in evs:
            for qid, acc in per_q.get(ev.pk, {}).items():
                pooled[qid].append(acc)
        row.questions.update({(bench, qid): statistics.fmean(v) for qid, v in pooled.items()})
        row.steps.extend(ev.step for ev in evs)
        row.run_ids.update(ev.run_id for ev in evs)
    return row


def _evals_for(
    runs: Iterable[Run], found: Mapping[tuple[int, str, str], Evaluation], mode: str, benchmarks: Sequence[str]
) -> dict[str, list[Evaluation]]:
    out = {b: [found[(r.pk, b, mode)] for r in runs if (r.pk, b, mode) in found] for b in benchmarks}
    return {b: evs for b, evs in out.items() if evs}


def _add_tests(rows: Sequence[PaperRow], base: PaperRow, benchmarks: Sequence[str], test: str) -> None:
    for row in rows:
        if row is base:
            continue
        row.test = paired_question_test(row.questions, base.questions, test=test)
        for bench, cell in zip(benchmarks, row.cells, strict=True):
            mine = {k: v for k, v in row.questions.items() if k[0] == bench}
            theirs = {k: v for k, v in base.questions.items() if k[0] == bench}
            cell.test = paired_question_test(mine, theirs, test=test)


def paper_table(
    groups: Sequence[RunGroup], baseline: RunGroup | None, *, test: str = DEFAULT_TEST
) -> PaperTable | None:
    """The paper's Table 1 for these groups, or None when no run has a finished evaluation.

    Each run contributes its latest evaluated checkpoint per benchmark. A Policy Split group
    gets a second "+ HE prompt" row from its HE-mode evaluations. When every run starts from
    the same model, the step-0 evaluations give an "Original" row on top.
    """
    runs = [r for g in groups for r in g.runs]
    trained, original = _latest_evaluations([r.pk for r in runs])
    if not trained:
        return None
    benchmarks = sorted({b for (_, b, _) in trained}, key=benchmark_sort_key)
    per_q = question_accuracy([e.pk for e in (*trained.values(), *original.values())])
    rows: list[PaperRow] = []
    same_model = len({r.model_name for r in runs}) == 1
    if same_model and (evals := _evals_for(runs, original, Mode.NORMAL, benchmarks)):
        rows.append(_build_row("Original", "original", evals, benchmarks, per_q))
    base_row = None
    for group in groups:
        if evals := _evals_for(group.runs, trained, Mode.NORMAL, benchmarks):
            row = _build_row(group.label, "method", evals, benchmarks, per_q, group)
            rows.append(row)
            if baseline is not None and group.key == baseline.key:
                row.is_baseline, base_row = True, row
        if group.is_policy_split and (evals := _evals_for(group.runs, trained, Mode.HE, benchmarks)):
            rows.append(_build_row(HE_ROW_LABEL, "he", evals, benchmarks, per_q, group))
    if base_row is not None:
        _add_tests(rows, base_row, benchmarks, test)
    averages = [r.avg_acc for r in rows if r.avg_acc is not None]
    for row in rows:
        row.best = len(rows) > 1 and row.avg_acc is not None and row.avg_acc == max(averages)
    return PaperTable(benchmarks, rows, test, base_row.label if base_row else "")


# --- export -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str
    bold: bool = False


@dataclass
class ExportTable:
    """A rectangular table ready for any format; ``align`` is one letter (l/c/r) per column."""

    title: str
    header: list[str]
    rows: list[list[Text]]
    align: str
    notes: list[str] = field(default_factory=list)
    # Row indexes after which LaTeX draws a \midrule / Markdown nothing (e.g. after "Original").
    rules_after: list[int] = field(default_factory=list)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _signed_pct(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _paper_label(row: PaperRow) -> str:
    if row.kind == "method" and row.n_runs > 1:
        return f"{row.label} ({row.n_runs} seeds)"
    return row.label


def paper_export(table: PaperTable, *, split: bool = False) -> ExportTable:
    """The paper table: "Acc / Ent" cells for Markdown/LaTeX, one number per column for CSV (``split``)."""
    if split:
        return _paper_export_split(table)
    header = ["Method", *table.titles, "Average"]
    if table.has_baseline:
        header += ["Δ Acc [95% CI]", "p"]
    rows = []
    for row in table.rows:
        cells = [Text(_paper_label(row))]
        for cell in row.cells:
            # n is in the row label; a cell that averages fewer runs (a seed not evaluated there) says so.
            fewer = f" (n={cell.n_evals})" if row.kind != "original" and cell.n_evals != row.n_runs else ""
            cells.append(Text(f"{_pct(cell.acc)}{cell.mark} / {_pct(cell.ent)}{fewer}"))
        cells.append(Text(f"{_pct(row.avg_acc)}{row.mark} / {_pct(row.avg_ent)}", bold=row.best))
        if table.has_baseline:
            if row.is_baseline:
                cells += [Text("baseline"), Text("–")]
            elif row.test:
                cells += [Text(f"{row.delta_text} {row.ci_text}"), Text(row.p_text)]
            else:
                cells += [Text("–"), Text("–")]
        rows.append(cells)
    rules = [0] if table.rows and table.rows[0].kind == "original" and len(table.rows) > 1 else []
    return ExportTable(
        f"Evaluation results (Acc / Ent; {PAPER_SUMMARY})",
        header,
        rows,
        "l" + "c" * (len(header) - 1),
        table.legend(),
        rules,
    )


def _paper_export_split(table: PaperTable) -> ExportTable:
    header = ["method", "row", "runs"]
    for bench in table.benchmarks:
        header += [f"{bench} acc", f"{bench} ent", f"{bench} p", f"{bench} n"]
    header += ["average acc", "average ent", "delta acc", "delta ci low", "delta ci high", "p", "test"]

    def num(value: float | None, digits: int = 4) -> Text:
        return Text("" if value is None else f"{value:.{digits}f}")

    rows = []
    for row in table.rows:
        label = f"{row.group.label} {HE_ROW_LABEL}" if row.kind == "he" and row.group else row.label
        cells = [Text(label), Text(row.kind), Text(str(row.n_runs))]
        for cell in row.cells:
            p = cell.test.p_value if cell.test else None
            cells += [num(cell.acc), num(cell.ent), num(p, 6), Text(str(cell.n_evals))]
        ci = row.ci or (None, None)
        cells += [
            num(row.avg_acc),
            num(row.avg_ent),
            num(row.delta),
            num(ci[0]),
            num(ci[1]),
            num(row.test.p_value if row.test else None, 6),
            Text(row.test.test if row.test else ""),
        ]
        rows.append(cells)
    return ExportTable(f"Evaluation results ({PAPER_SUMMARY})", header, rows, "l" * len(header))


def final_export(table: FinalTable, *, split: bool = False) -> ExportTable:
    """The final-metrics table: "mean ± std (Δ)" cells, or separate numeric columns for CSV."""
    header = ["Run" if not table.grouped else "Group", "Runs"]
    for key in table.keys:
        header += [key, f"{key} std", f"{key} delta"] if split else [key]
    rows = []
    for row in table.rows:
        cells = [
            Text(row.group.label + (" (baseline)" if row.is_baseline and not split else "")),
            Text(str(len(row.group.runs))),
        ]
        for cell in row.cells:
            if split:
                cells += [
                    Text("" if cell.value is None else repr(cell.value)),
                    Text("" if cell.std is None else repr(cell.std)),
                    Text("" if cell.delta is None else repr(cell.delta)),
                ]
                continue
            text = cell.text + (f" ± {cell.std_text}" if cell.std_text else "")
            if cell.delta_text:
                text += f" ({cell.delta_text})"
            cells.append(Text(text))
        rows.append(cells)
    notes = [f"Deltas vs {table.baseline.label}." if table.baseline else ""]
    return ExportTable(table.title, header, rows, "l" + "r" * (len(header) - 1), [n for n in notes if n])


# CSV cells that a spreadsheet would run as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(table: ExportTable) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow([_csv_safe(c.text) for c in row])
    return buf.getvalue()


def _csv_safe(text: str) -> str:
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


_MD_SPECIAL = {c: "\\" + c for c in "\\|*_`"} | {"\n": " ", "\r": " "}
_MD_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def markdown_escape(text: str) -> str:
    """Literal text for a Markdown table cell: no emphasis, tags or links; "p < 0.05" stays readable."""
    text = "".join(_MD_SPECIAL.get(c, c) for c in text).replace("](", "]\\(")
    return _MD_TAG_START.sub("&lt;", text)


def to_markdown(table: ExportTable) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    align = {"l": ":---", "c": ":---:", "r": "---:"}
    out = [
        f"**{markdown_escape(table.title)}**",
        "",
        line(markdown_escape(h) for h in table.header),
        line(align[a] for a in table.align),
    ]
    for row in table.rows:
        out.append(line(f"**{markdown_escape(c.text)}**" if c.bold else markdown_escape(c.text) for c in row))
    if table.notes:
        out.append("")
        out.extend(markdown_escape(n) for n in table.notes)
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "†": r"\textsuperscript{\dag}",
    "‡": r"\textsuperscript{\ddag}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "η": r"$\eta$",
    "α": r"$\alpha$",
    "κ": r"$\kappa$",
    "₂": r"$_2$",
    "–": "--",
    "—": "---",
    "−": "$-$",
    "…": r"\ldots{}",
    "\n": " ",
    "\r": " ",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (and map the few symbols our tables use) in one pass."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _latex_cell(cell: Text) -> str:
    return rf"\textbf{{{latex_escape(cell.text)}}}" if cell.bold else latex_escape(cell.text)


def to_latex(table: ExportTable) -> str:
    def line(cells: Iterable[str]) -> str:
        return "    " + " & ".join(cells) + r" \\"

    out = [
        "% Generated by Policy Split Lab; needs \\usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"  \centering",
        r"  \small",
        rf"  \begin{{tabular}}{{{table.align}}}",
        r"    \toprule",
        line(latex_escape(h) for h in table.header),
        r"    \midrule",
    ]
    for i, row in enumerate(table.rows):
        out.append(line(_latex_cell(c) for c in row))
        if i in table.rules_after:
            out.append(r"    \midrule")
    caption = " ".join([table.title.rstrip(".") + ".", *table.notes])
    out += [r"    \bottomrule", r"  \end{tabular}", rf"  \caption{{{latex_escape(caption)}}}", r"\end{table}"]
    return "\n".join(out) + "\n"


# format -> (content type, file extension, renderer, one number per column?)
EXPORT_FORMATS: dict[str, tuple[str, str, Callable[[ExportTable], str], bool]] = {
    "csv": ("text/csv; charset=utf-8", "csv", to_csv, True),
    "md": ("text/markdown; charset=utf-8", "md", to_markdown, False),
    "tex": ("application/x-tex; charset=utf-8", "tex", to_latex, False),
}


# --- parallel coordinates: a study's factors against one outcome --------------------------------------


def log_axes(search: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """{field: (low, high)} of a study's ``loguniform`` search ranges (Study.search): the factors its
    parallel coordinates plot on a log axis."""
    axes = {}
    for name, text in (search.get("space") or {}).items():
        try:
            dist = parse_distribution(str(text))
        except SearchError:
            continue
        if dist.kind == "loguniform":
            axes[name] = (float(dist.args[0]), float(dist.args[1]))
    return axes


def _tick_label(value: float) -> str:
    """Short labels for a log axis: 1e-05 -> 1e-5, 2.50e-05 -> 2.5e-5, 0.05 -> 0.05, 3 significant digits."""
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def log_ticks(low: float, high: float) -> list[float]:
    """Readable ticks between ``low`` and ``high`` (> 0): 1, 2, 5 × each power of ten over up to three
    decades, the powers of ten alone beyond that; the ends themselves when fewer than two fall inside."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    mantissas = (1, 2, 5) if last - first <= 3 else (1,)
    ticks = [float(f"{m}e{e}") for e in range(first, last + 1) for m in mantissas]
    inside = [t for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    return inside if len(inside) >= 2 else [low, high]


def _log_dimension(label: str, name: str, values: list[float], declared: tuple[float, float]) -> dict[str, Any]:
    """A factor drawn on a log10 axis (plotly's parcoords has none): positions are log10 of the
    values, the ticks sit at readable values; ``raw`` keeps the values for hover texts."""
    low, high = min([declared[0], *values]), max([declared[1], *values])
    ticks = log_ticks(low, high)
    return {
        "label": label,
        "field": name,
        "scale": "log",
        "values": [math.log10(v) for v in values],
        "raw": values,
        "range": [math.log10(low), math.log10(high)],
        "tickvals": [math.log10(t) for t in ticks],
        "ticktext": [_tick_label(t) for t in ticks],
    }


def parallel_coordinates(
    runs: Sequence[Run], fields: Sequence[str], outcome: str, *, log: Mapping[str, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """Plotly ``parcoords`` dimensions: one axis per factor (numbers as they are, factors in ``log``
    (``log_axes``) on a log10 axis, other values as ticks in order of appearance) and the outcome
    last; runs without the outcome are left out."""
    rows = [r for r in runs if _number(r.summary.get(outcome)) is not None]
    dimensions: list[dict[str, Any]] = []
    for name in fields:
        values = [config_value(r, name) for r in rows]
        label = FIELD_SYMBOLS.get(name, name)
        if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            numbers = [float(v) for v in values]
            if log and name in log and all(v > 0 for v in numbers):
                dimensions.append(_log_dimension(label, name, numbers, log[name]))
            else:
                dimensions.append({"label": label, "field": name, "values": numbers})
        else:
            ticks = list(dict.fromkeys(format_value(v) for v in values))
            dimensions.append(
                {
                    "label": label,
                    "field": name,
                    "values": [ticks.index(format_value(v)) for v in values],
                    "tickvals": list(range(len(ticks))),
                    "ticktext": ticks,
                }
            )
    scores = [_number(r.summary.get(outcome)) for r in rows]
    dimensions.append({"label": outcome, "field": outcome, "values": scores, "outcome": True})
    return {
        "outcome": outcome,
        "direction": metric_direction(outcome),  # 1: higher is better, -1: lower, 0: neither
        "runs": [r.name for r in rows],
        "dimensions": dimensions,
        "n": len(rows),
    }
