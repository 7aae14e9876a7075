"""Reads behind the evaluations page: evaluable steps, per-question counts, and the questions that
one mode alone solved."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, When
from django.utils import timezone

from trainer.choices import MODES
from webapp.models import EvalResult, EvalStatus, Evaluation, Run


def checkpoint_steps(run: Run) -> list[int]:
    """Steps that can be evaluated: 0 (the base model) and every checkpoint still on disk."""
    steps = [c.step for c in run.checkpoints.order_by("step") if is_model_folder(c.path)]
    return [0, *steps]


def is_model_folder(path: str) -> bool:
    """Whether a checkpoint folder is still on disk (older ones are pruned)."""
    return bool(path) and (Path(path) / "config.json").is_file()


def stale_evaluations(*, older_than: timedelta) -> QuerySet[Evaluation]:
    """Running evaluations whose worker stopped sending heartbeats (the lost-work sweep reads them).

    One claimed before evaluations had a heartbeat has none: it counts from its creation."""
    cutoff = timezone.now() - older_than
    beat_stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    return Evaluation.objects.filter(beat_stale, status=EvalStatus.RUNNING)


def question_counts(evaluation_ids: Sequence[int]) -> dict[int, dict[str, tuple[int, int]]]:
    """Per evaluation, per question: (samples, correct samples) in one GROUP BY."""
    correct = Sum(Case(When(score__gt=0.5, then=1), default=0, output_field=IntegerField()))
    rows = (
        EvalResult.objects.filter(evaluation_id__in=list(evaluation_ids))
        .values("evaluation_id", "question_id")
        .annotate(n=Count("id"), c=correct)
        .order_by()
    )
    out: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
    for row in rows:
        out[row["evaluation_id"]][row["question_id"]] = (int(row["n"]), int(row["c"] or 0))
    return out


@dataclass
class OneModeQuestion:
    benchmark: str
    step: int
    question_id: str
    solved_by: str  # the mode that found a correct answer
    counts: dict[str, tuple[int, int]]  # mode -> (samples, correct)
    evaluations: dict[str, int]  # mode -> evaluation id


def one_mode_only(
    evaluations: Sequence[Evaluation], *, limit: int = 200
) -> tuple[list[OneModeQuestion], dict[str, int]]:
    """Questions where exactly one mode found a correct answer (per benchmark and step): the first
    ``limit`` of them and how many each mode found alone in total."""
    pairs: dict[tuple[str, int], dict[str, Evaluation]] = defaultdict(dict)
    for ev in evaluations:
        if ev.status == EvalStatus.SUCCEEDED and (ev.metrics or {}).get("graded", True):
            pairs[(ev.benchmark, ev.step)][ev.mode] = ev
    both = {key: p for key, p in pairs.items() if set(MODES) <= set(p)}
    counts = question_counts([ev.pk for p in both.values() for ev in p.values()])
    found: list[OneModeQuestion] = []
    for (bench, step), p in sorted(both.items()):
        cn, ch = counts.get(p["normal"].pk, {}), counts.get(p["he"].pk, {})
        for qid in sorted(set(cn) & set(ch)):
            solved = [m for m, c in (("normal", cn[qid]), ("he", ch[qid])) if c[1] > 0]
            if len(solved) == 1:
                found.append(
                    OneModeQuestion(
                        bench,
                        step,
                        qid,
                        solved[0],
                        {"normal": cn[qid], "he": ch[qid]},
                        {m: ev.pk for m, ev in p.items()},
                    )
                )
    return found[:limit], {mode: sum(1 for q in found if q.solved_by == mode) for mode in MODES}
