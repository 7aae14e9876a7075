"""Reads of the samples pages (side by side, review): the two sides shown, the steps and
questions with samples, one question's samples, and what the user may write.

Query counts are constant in the number of questions and samples (see each function).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Avg, Count, IntegerField, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from trainer.data.prompts import HE_SYSTEM_PROMPT
from webapp.models import (
    MODE_SHORT,
    ROLE_RANK,
    TOKEN_COLUMNS,
    Comment,
    Membership,
    Mode,
    Role,
    Run,
    Sample,
    Verdict,
)
from webapp.selectors import runs_search

MODE_LABELS = {m.value: f"{m.label} mode" for m in Mode}  # the labels are Mode's


# --- what a read returns ----------------------------------------------------------------------------


@dataclass
class Side:
    """One column: the samples of one run in one mode."""

    key: str  # "a" | "b"
    run: Run
    mode: str
    compare: bool

    @property
    def label(self) -> str:
        return f"{self.run.name} · {MODE_LABELS[self.mode]}" if self.compare else MODE_LABELS[self.mode]

    @property
    def short(self) -> str:
        return self.key.upper() if self.compare else MODE_SHORT[self.mode]

    def matches(self, run_id: int, mode: str) -> bool:
        return self.run.pk == run_id and self.mode == mode

    def filter(self) -> Q:
        # Generated samples only: a response shown under its own mode's context.
        return Q(run_id=self.run.pk, mode=self.mode, context=self.mode)


@dataclass
class SideStats:
    n: int = 0
    correct: int = 0
    mean_reward: float = 0.0

    @property
    def any_correct(self) -> bool:
        return self.correct > 0

    @property
    def any_incorrect(self) -> bool:
        return self.correct < self.n


@dataclass
class QuestionRow:
    question_id: str
    text: str
    order: int
    a: SideStats | None = None
    b: SideStats | None = None
    url: str = ""

    @property
    def both(self) -> bool:
        return self.a is not None and self.b is not None

    @property
    def one_correct(self) -> bool:
        """Exactly one side found a correct answer (the key analysis view)."""
        return self.both and self.a.any_correct != self.b.any_correct  # type: ignore[union-attr]

    @property
    def disagree(self) -> bool:
        return self.both and (
            abs(self.a.mean_reward - self.b.mean_reward) > 1e-9  # type: ignore[union-attr]
            or self.one_correct
        )

    @property
    def correct_side(self) -> str:
        """ "a" or "b" when only that side was correct, else ""."""
        if not self.one_correct:
            return ""
        return "a" if self.a.any_correct else "b"  # type: ignore[union-attr]

    def passes(self, *, show: str, outcome: str) -> bool:
        """Whether the row passes the page's filters (``show``: all | disagree | one_correct;
        ``outcome``: any | correct | incorrect)."""
        stats = [s for s in (self.a, self.b) if s is not None]
        if show == "disagree" and not self.disagree:
            return False
        if show == "one_correct" and not self.one_correct:
            return False
        if outcome == "correct":
            return any(s.any_correct for s in stats)
        if outcome == "incorrect":
            return any(s.any_incorrect for s in stats)
        return True


# --- prompts --------------------------------------------------------------------------------------

_CHATML_TURN = re.compile(r"<\|im_start\|>(\w+)\n?(.*?)(?:<\|im_end\|>|$)", re.S)
_LLAMA_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n*(.*?)(?:<\|eot_id\|>|$)", re.S)
_SPECIAL = re.compile(r"<\|[^|<>]{1,40}\|>")


def prompt_turns(prompt: str) -> list[tuple[str, str, bool]]:
    """Split a templated prompt into (role, text, is the HE system turn) for display.

    Knows ChatML (Qwen, SmolLM2) and Llama 3 markers; anything else is one "prompt" turn.
    """
    turns = [(m[0], m[1].strip()) for m in _CHATML_TURN.findall(prompt)] or [
        (m[0], m[1].strip()) for m in _LLAMA_TURN.findall(prompt)
    ]
    if not turns:
        turns = [("prompt", prompt.strip())]
    return [(role, text, HE_SYSTEM_PROMPT in text) for role, text in turns]


def question_text(prompt: str) -> str:
    """The question inside a templated prompt: its last user turn, without the HE instruction."""
    users = [text for role, text, _ in prompt_turns(prompt) if role == "user"]
    text = users[-1] if users else _SPECIAL.sub("", prompt)
    return text.replace(HE_SYSTEM_PROMPT, "").strip()


# --- reads ----------------------------------------------------------------------------------------


def _side_filter(sides: tuple[Side, Side]) -> Q:
    return sides[0].filter() | sides[1].filter()


def steps_with_samples(sides: tuple[Side, Side]) -> list[int]:
    run_ids = {s.run.pk for s in sides}
    steps = Sample.objects.filter(run_id__in=run_ids).values_list("step", flat=True)
    return list(steps.distinct().order_by("step"))


def _search_filter(text: str) -> Q:
    return (
        Q(question_id__icontains=text)
        | Q(prompt__icontains=text)
        | Q(response__icontains=text)
        | Q(answer__icontains=text)
    )


def question_rows(sides: tuple[Side, Side], step: int, search: str) -> list[QuestionRow]:
    """Every question of the step with per-side accuracy: one GROUP BY (run, question, mode) query."""
    qs = Sample.objects.filter(_side_filter(sides), step=step)
    if search:
        matching = Sample.objects.filter(_side_filter(sides), _search_filter(search), step=step)
        qs = qs.filter(question_id__in=matching.values("question_id"))
    groups = (
        qs.values("run_id", "question_id", "mode")
        .annotate(
            n=Count("id"),
            correct=Count("id", filter=Q(reward__gt=0.5)),
            mean_reward=Avg("reward"),
            first_id=Min("id"),
            prompt=Min("prompt"),
        )
        .order_by()
    )
    rows: dict[str, QuestionRow] = {}
    for g in groups:
        qid = g["question_id"]
        row = rows.get(qid)
        if row is None:
            row = rows[qid] = QuestionRow(qid, question_text(g["prompt"]), g["first_id"])
        row.order = min(row.order, g["first_id"])
        stats = SideStats(g["n"], g["correct"], g["mean_reward"] or 0.0)
        for side in sides:
            if side.matches(g["run_id"], g["mode"]):
                setattr(row, side.key, stats)
    return sorted(rows.values(), key=lambda r: r.order)


def question_samples(
    sides: tuple[Side, Side], step: int, question_id: str, *, outcome: str, user: Any, tokens: bool = True
) -> list[Sample]:
    """One question's samples of both sides with comment counts and the user's verdict: one query.
    ``tokens``: also load the heatmap's packed arrays (only when the heatmap is shown)."""
    samples = Sample.objects.with_tokens() if tokens else Sample.objects.all()
    qs: QuerySet[Sample] = samples.filter(_side_filter(sides), step=step, question_id=question_id)
    if outcome == "correct":
        qs = qs.filter(reward__gt=0.5)
    elif outcome == "incorrect":
        qs = qs.filter(reward__lte=0.5)
    n_comments = (
        Comment.objects.filter(sample=OuterRef("pk")).order_by().values("sample").annotate(c=Count("id")).values("c")
    )
    my_verdict = (
        Verdict.objects.filter(sample=OuterRef("pk"), author=user).order_by("-created_at", "-id").values("verdict")
    )
    return list(
        qs.annotate(
            n_comments=Coalesce(Subquery(n_comments, output_field=IntegerField()), 0),
            my_verdict=Subquery(my_verdict[:1]),
        ).order_by("index", "id")
    )


def writable_runs(user: Any, sides: tuple[Side, Side]) -> set[int]:
    """Ids of the shown runs the user may review (member or admin of the run's team)."""
    teams = {s.run.project.team_id for s in sides}
    roles = dict(Membership.objects.filter(user=user, team_id__in=teams).values_list("team_id", "role"))
    return {
        s.run.pk
        for s in sides
        if ROLE_RANK[Role(roles.get(s.run.project.team_id, Role.VIEWER))] >= ROLE_RANK[Role.MEMBER]
    }


PICKER_RUNS = 20


def other_runs(run: Run) -> list[Run]:
    """The newest runs of the same project that the page offers next to ``run`` (its picker's
    search box asks selectors.runs_search for any other one, so the page never lists them all)."""
    return runs_search(run.project, "", limit=PICKER_RUNS, exclude=[run.pk])


def samples_tokens(user: Any, ids: list[int]) -> dict[str, list[Any]]:
    """{id: [tokens, surprisal]} of the samples among ``ids`` that ``user`` may see."""
    runs = Run.objects.for_user(user)
    samples = Sample.objects.with_tokens().filter(pk__in=ids, run__in=runs).only("id", "response", *TOKEN_COLUMNS)
    return {str(s.pk): [s.tokens, s.surprisal] for s in samples}
