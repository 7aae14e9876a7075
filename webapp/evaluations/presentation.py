"""The evaluations page's tables and charts, with the numbers formatted for display."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.choices import MODES
from trainer.data.benchmarks import BENCHMARK_NAMES, BENCHMARKS, benchmark_title
from trainer.evaluation.diversity import pass_at_k_curve
from webapp.evaluations.selectors import question_counts
from webapp.models import EvalStatus, Evaluation


def _num(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        scaled = scale * value
        return f"{0.0 if round(scaled, digits) == 0 else scaled:.{digits}f}"  # never "-0.00" (float noise)
    return "–"


@dataclass
class EvalRow:
    """One evaluation in the per-run table, with its numbers formatted for display."""

    evaluation: Evaluation

    @property
    def m(self) -> dict[str, Any]:
        return self.evaluation.metrics or {}

    @property
    def acc(self) -> str:
        return _num(self.m.get("accuracy"), 100)

    @property
    def ci(self) -> str:
        ci = self.m.get("accuracy_ci")
        return f"[{_num(ci[0], 100, 1)}, {_num(ci[1], 100, 1)}]" if ci else ""

    @property
    def ent(self) -> str:
        return _num(self.m.get("entropy_bits"), digits=3)

    @property
    def length(self) -> str:
        return _num(self.m.get("length"), digits=1)

    @property
    def pass1(self) -> str:
        return _num((self.m.get("pass_at_k") or {}).get("1"), 100)

    @property
    def k(self) -> int:
        return int(self.evaluation.settings.get("k") or 0)

    @property
    def passk(self) -> str:
        curve = self.m.get("pass_at_k") or {}
        return _num(curve[max(curve, key=int)], 100) if curve else "–"

    @property
    def unique(self) -> str:
        return _num(self.m.get("unique_correct"))

    @property
    def kl(self) -> str:
        return _num(self.m.get("kl_to_other"), digits=4)

    @property
    def creative(self) -> dict[str, str]:
        judge = self.m.get("judge") or {}
        return {
            "div_ngram": _num(self.m.get("div_ngram")),
            "div_bleu": _num(self.m.get("div_bleu")),
            "embedding_diversity": _num(self.m.get("embedding_diversity")),
            "judge": _num(judge.get("overall"), digits=1),
            "judge_errors": str(judge.get("errors", "")) if judge.get("errors") else "",
        }


@dataclass
class BenchmarkTable:
    benchmark: str
    title: str
    graded: bool
    rows: list[EvalRow] = field(default_factory=list)


def evaluation_tables(evaluations: Sequence[Evaluation]) -> list[BenchmarkTable]:
    """One table per benchmark (registry order), rows by step then mode."""
    tables: dict[str, BenchmarkTable] = {}
    for ev in sorted(evaluations, key=lambda e: (e.step, MODES.index(e.mode) if e.mode in MODES else 9)):
        spec = BENCHMARKS.get(ev.benchmark)
        table = tables.setdefault(
            ev.benchmark, BenchmarkTable(ev.benchmark, benchmark_title(ev.benchmark), spec.graded if spec else True)
        )
        table.rows.append(EvalRow(ev))
    order = {name: i for i, name in enumerate(BENCHMARK_NAMES)}
    return sorted(tables.values(), key=lambda t: (order.get(t.benchmark, len(order)), t.benchmark))


@dataclass
class PassAtKChart:
    benchmark: str
    title: str
    step: int
    curves: dict[str, dict[str, list[float]]]  # mode -> {"k": [...], "pass": [...] (percent)}
    links: dict[str, int] = field(default_factory=dict)  # mode -> evaluation id


def pass_at_k_charts(evaluations: Sequence[Evaluation]) -> list[PassAtKChart]:
    """Best-of-k comparison: the unbiased pass@k curve (k = 1..K) of each mode, per benchmark and step."""
    done = [ev for ev in evaluations if ev.status == EvalStatus.SUCCEEDED and (ev.metrics or {}).get("graded", True)]
    counts = question_counts([ev.pk for ev in done])
    charts: dict[tuple[str, int], PassAtKChart] = {}
    for ev in done:
        per_q = list(counts.get(ev.pk, {}).values())
        if not per_q:
            continue
        curve = pass_at_k_curve(per_q)
        chart = charts.setdefault(
            (ev.benchmark, ev.step), PassAtKChart(ev.benchmark, benchmark_title(ev.benchmark), ev.step, {})
        )
        chart.curves[ev.mode] = {"k": [float(k) for k in curve], "pass": [100 * v for v in curve.values()]}
        chart.links[ev.mode] = ev.pk
    return sorted(charts.values(), key=lambda c: (c.benchmark, c.step))
