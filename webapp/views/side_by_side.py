"""Side by side: the two modes' responses to one question at one step, in two columns.

Every state of the page (step, question, filters, heatmap, a second run) lives in the query
string, so any view is a permalink and the page renders fully on the server; the page script
only adds keyboard navigation and an instant heatmap toggle.

The reads are in ``webapp.sample_selectors``; their number is constant in the number of questions
and samples: one for the steps, one for the per-question aggregates (GROUP BY run, question, mode)
and one for the selected question's samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse

from trainer.choices import MODES
from webapp.http.access import run_for
from webapp.http.params import bool_param, int_param, or_default
from webapp.models import Mode, Run, Sample
from webapp.sample_selectors import (
    MODE_LABELS,
    QuestionRow,
    Side,
    SideStats,
    other_runs,
    prompt_turns,
    question_rows,
    question_samples,
    samples_tokens,
    steps_with_samples,
    writable_runs,
)
from webapp.templatetags.psl import HEAT_SCALES, SURPRISAL_EDGES, auto_edges, surprisal_bucket

SHOW_CHOICES = {"all": "All questions", "disagree": "Modes disagree", "one_correct": "Only one correct"}
OUTCOME_CHOICES = {"any": "Any outcome", "correct": "Correct", "incorrect": "Incorrect"}


# --- the state in the query string ----------------------------------------------------------------


@dataclass(frozen=True)
class ViewState:
    """What the page shows; parsed leniently (a bad value falls back to its default, never a 400)."""

    step: int | None = None
    q: str = ""
    show: str = "all"
    outcome: str = "any"
    search: str = ""
    heat: bool = True
    scale: str = "auto"  # the heatmap's colour scale: auto (percentiles of the view) or fixed (0–6 nats)
    compare: int | None = None
    mode_a: str = Mode.NORMAL.value
    mode_b: str = ""  # "" = the default for the view (see default_mode_b)

    @classmethod
    def from_query(cls, qd: QueryDict) -> ViewState:
        mode_b = qd.get("mode_b", "")
        return cls(
            step=or_default(int_param, qd, "step", None),
            q=qd.get("q", "")[:100],
            show=qd.get("show", "") if qd.get("show") in SHOW_CHOICES else "all",
            outcome=qd.get("outcome", "") if qd.get("outcome") in OUTCOME_CHOICES else "any",
            search=qd.get("search", "").strip()[:200],
            heat=or_default(bool_param, qd, "heat", True),
            scale=qd.get("scale", "") if qd.get("scale") in HEAT_SCALES else "auto",
            compare=or_default(int_param, qd, "compare", None),
            mode_a=qd.get("mode_a", "") if qd.get("mode_a") in MODES else Mode.NORMAL.value,
            mode_b=mode_b if mode_b in MODES else "",
        )

    @staticmethod
    def default_mode_b(compare: int | None) -> str:
        # One run: normal vs HE. Two runs (e.g. GRPO vs Policy Split): the normal mode of both.
        return Mode.NORMAL.value if compare else Mode.HE.value

    @property
    def side_b_mode(self) -> str:
        return self.mode_b or self.default_mode_b(self.compare)

    def query(self, **changes: Any) -> str:
        """The query string of this state with ``changes`` applied; defaults are left out."""
        s = replace(self, **changes)
        pairs: list[tuple[str, Any]] = []
        if s.step is not None:
            pairs.append(("step", s.step))
        if s.q:
            pairs.append(("q", s.q))
        if s.show != "all":
            pairs.append(("show", s.show))
        if s.outcome != "any":
            pairs.append(("outcome", s.outcome))
        if s.search:
            pairs.append(("search", s.search))
        if not s.heat:
            pairs.append(("heat", "0"))
        if s.scale != "auto":
            pairs.append(("scale", s.scale))
        if s.compare:
            pairs.append(("compare", s.compare))
        if s.mode_a != Mode.NORMAL.value:
            pairs.append(("mode_a", s.mode_a))
        if s.mode_b and s.mode_b != self.default_mode_b(s.compare):
            pairs.append(("mode_b", s.mode_b))
        return urlencode(pairs)


# --- sides, questions and cards -----------------------------------------------------------------


@dataclass
class Card:
    sample: Sample
    heat: list[tuple[str, int, str]] = field(default_factory=list)  # (piece, bucket, "1.23")
    prompt_turns: list[tuple[str, str, bool]] = field(default_factory=list)  # (role, text, is HE system)

    @property
    def he_system(self) -> bool:
        return any(is_he for _, _, is_he in self.prompt_turns)


@dataclass
class Column:
    side: Side
    cards: list[Card]
    stats: SideStats | None
    can_write: bool

    @property
    def mean_length(self) -> float | None:
        return sum(c.sample.length for c in self.cards) / len(self.cards) if self.cards else None

    @property
    def mean_entropy(self) -> float | None:
        values = [c.sample.entropy for c in self.cards if c.sample.entropy is not None]
        return sum(values) / len(values) if values else None


def heat_pieces(sample: Sample, edges: tuple[float, ...] = SURPRISAL_EDGES) -> list[tuple[str, int, str]]:
    pairs = zip(sample.tokens or [], sample.surprisal or [], strict=False)
    return [(str(tok), surprisal_bucket(s, edges), f"{s:.2f}") for tok, s in pairs]


def heat_edges(samples: list[Sample], scale: str) -> tuple[float, ...]:
    """The bucket edges of this view: fixed, or percentiles of the surprisals of the shown samples
    (whose token data must be loaded; a page without the heatmap gets them with the token data)."""
    if scale == "fixed" or not samples or "surprisal_f32" in samples[0].get_deferred_fields():
        return SURPRISAL_EDGES
    return auto_edges(v for s in samples for v in s.surprisal or [])


def sides_for(run: Run, run_b: Run | None, state: ViewState) -> tuple[Side, Side]:
    compare = run_b is not None
    return (Side("a", run, state.mode_a, compare), Side("b", run_b or run, state.side_b_mode, compare))


# --- the view -------------------------------------------------------------------------------------


def _pick_step(steps: list[int], wanted: int | None) -> int | None:
    if not steps:
        return None
    if wanted in steps:
        return wanted
    if wanted is None:
        return steps[-1]
    # The nearest step that has samples (samples are usually logged every k steps).
    return min(steps, key=lambda s: (abs(s - wanted), s))


def _neighbours(items: list[Any], current: Any) -> tuple[Any, Any]:
    if current not in items:
        return None, None
    i = items.index(current)
    return (items[i - 1] if i > 0 else None), (items[i + 1] if i + 1 < len(items) else None)


def _columns(
    sides: tuple[Side, Side],
    samples: list[Sample],
    row: QuestionRow | None,
    heat: bool,
    writable: set[int],
    edges: tuple[float, ...] = SURPRISAL_EDGES,
) -> list[Column]:
    columns = []
    for side in sides:
        cards = [
            Card(s, heat_pieces(s, edges) if heat else [], prompt_turns(s.prompt))
            for s in samples
            if side.matches(s.run_id, s.mode)
        ]
        stats = getattr(row, side.key) if row else None
        columns.append(Column(side, cards, stats, side.run.pk in writable))
    return columns


def _links(state: ViewState, ids: list[str], steps: list[int]) -> dict[str, Any]:
    """Every link of the page, each carrying the whole state (so each is a permalink)."""

    def url(**changes: Any) -> str:
        return "?" + state.query(**changes)

    prev_q, next_q = _neighbours(ids, state.q)
    prev_step, next_step = _neighbours(steps, state.step)
    return {
        "canonical": state.query(),
        "prev_q_url": url(q=prev_q) if prev_q is not None else "",
        "next_q_url": url(q=next_q) if next_q is not None else "",
        "prev_step_url": url(step=prev_step) if prev_step is not None else "",
        "next_step_url": url(step=next_step) if next_step is not None else "",
        "heat_toggle_url": url(heat=not state.heat),
        "scale_links": [(k, k, url(scale=k)) for k in HEAT_SCALES],
        "show_links": [(k, label, url(show=k)) for k, label in SHOW_CHOICES.items()],
        "outcome_links": [(k, label, url(outcome=k)) for k, label in OUTCOME_CHOICES.items()],
        "clear_filters_url": url(show="all", outcome="any", search=""),
    }


@login_required
def side_by_side(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    state = ViewState.from_query(request.GET)
    run_b = run_for(request.user, state.compare) if state.compare and state.compare != run.pk else None
    if run_b is None:
        state = replace(state, compare=None)
    sides = sides_for(run, run_b, state)
    steps = steps_with_samples(sides)
    step = _pick_step(steps, state.step)
    all_rows = question_rows(sides, step, state.search) if step is not None else []
    rows = [r for r in all_rows if r.passes(show=state.show, outcome=state.outcome)]
    ids = [r.question_id for r in rows]
    state = replace(state, step=step, q=state.q if state.q in ids else (ids[0] if ids else ""))
    row = next((r for r in rows if r.question_id == state.q), None)
    samples = (
        question_samples(sides, step, row.question_id, outcome=state.outcome, user=request.user, tokens=state.heat)
        if row and step is not None
        else []
    )
    for r in rows:
        r.url = "?" + state.query(q=r.question_id)
    edges = heat_edges(samples, state.scale)
    context = {
        "run": run,
        "run_b": run_b,
        "project": run.project,
        "nav": "runs",
        "state": state,
        "sides": sides,
        "steps": steps,
        "step": step,
        "rows": rows,
        "n_rows_total": len(all_rows),
        "row": row,
        "columns": _columns(sides, samples, row, state.heat, writable_runs(request.user, sides), edges),
        "question": samples[0] if samples else None,
        "self_url": request.path + "?" + state.query(),
        "compare_runs": other_runs(run),
        "modes": [(m, MODE_LABELS[m]) for m in MODES],
        "heat_legend": [f"{lo:g}" for lo in (0.0, *edges)],
        "heat_edges": list(edges),
        # Without the heatmap on the page, the script fetches the token data when it is toggled on.
        "tokens_url": reverse("webapp-sample-tokens")
        + "?ids="
        + ",".join(str(s.pk) for s in samples)
        + ("&scale=auto" if state.scale == "auto" else ""),
        **_links(state, ids, steps),
    }
    return render(request, "webapp/side_by_side.html", context)


def side_by_side_url(run: Run, **params: Any) -> str:
    """Link into the side-by-side view from other pages: side_by_side_url(run, step=3, q="gsm8k-17")."""
    query = ViewState(**params).query()
    return reverse("webapp-side-by-side", args=[run.pk]) + ("?" + query if query else "")


MAX_TOKEN_SAMPLES = 200


@login_required
def sample_tokens(request: HttpRequest) -> JsonResponse:
    """The heatmap data of some samples, {id: [tokens, surprisal]}, for the side-by-side toggle;
    with ?scale=auto also "edges", the auto scale's bucket edges over these samples."""
    ids = [int(v) for v in request.GET.get("ids", "").split(",") if v.isdigit()][:MAX_TOKEN_SAMPLES]
    data: dict[str, Any] = samples_tokens(request.user, ids)
    if request.GET.get("scale") == "auto":
        data["edges"] = list(auto_edges(v for _, surprisal in data.values() for v in surprisal))
    return JsonResponse(data)


urlpatterns = [
    path("runs/<int:pk>/side-by-side/", side_by_side, name="webapp-side-by-side"),
    path("samples/tokens/", sample_tokens, name="webapp-sample-tokens"),
]
