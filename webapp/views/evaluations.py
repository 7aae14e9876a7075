"""Per-run evaluations: the results tables, the trigger form, live status, analysis charts and the
sampled responses of one evaluation.

Writes go through ``webapp.evaluations.services``, reads through ``webapp.evaluations.selectors``
and ``presentation``; the page's charts are drawn by ``static/js/evaluation.js`` from one JSON blob
(``json_script``), so no model text ever reaches JavaScript as markup.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_http_methods

from trainer.choices import MODES
from trainer.config import EVAL_SAMPLING
from trainer.data.benchmarks import BENCHMARK_NAMES, BENCHMARKS, benchmark_problem, load_benchmark
from trainer.evaluation.diversity import LN2
from webapp.evaluations.presentation import evaluation_tables, pass_at_k_charts
from webapp.evaluations.selectors import checkpoint_steps, one_mode_only
from webapp.evaluations.services import ACTIVE, MAX_K, EvalRequest, evaluations_create, judge_configured
from webapp.http.access import can, require, run_for
from webapp.models import EvalResult, Evaluation, Mode, Role, Run
from webapp.selectors import metric_series
from webapp.services import ServiceError

QUESTIONS_PER_PAGE = 20
TRAINING_KEYS = {"kl": ("split/he_normal_kl", "split/normal_he_kl"), "entropy": ("normal/entropy", "he/entropy")}
# Mode's labels, the HE one saying what the mode is.
MODE_LABELS = {m.value: m.label for m in Mode} | {Mode.HE.value: f"{Mode.HE.label} (HE system prompt)"}


class EvaluationForm(forms.Form):
    """Evaluate one checkpoint: the choices depend on the run's checkpoints and the data on this server."""

    step = forms.TypedChoiceField(coerce=int, label="Checkpoint step")
    benchmarks = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple)
    modes = forms.MultipleChoiceField(
        choices=list(MODE_LABELS.items()), initial=list(MODES), widget=forms.CheckboxSelectMultiple
    )
    k = forms.IntegerField(min_value=1, max_value=MAX_K, initial=EVAL_SAMPLING.k, label="k (samples per question)")
    limit = forms.IntegerField(min_value=1, required=False, label="Questions per benchmark", help_text="empty = all")
    max_new_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=EVAL_SAMPLING.max_new_tokens)
    temperature = forms.FloatField(min_value=0.01, max_value=5.0, initial=EVAL_SAMPLING.temperature)
    top_k = forms.IntegerField(min_value=0, initial=EVAL_SAMPLING.top_k, label="top-k", help_text="0 = off")
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, initial=EVAL_SAMPLING.top_p, label="top-p")
    judge = forms.BooleanField(required=False, label="LLM judge for creative prompts")

    def __init__(self, *args: Any, run: Run, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        steps = checkpoint_steps(run)
        step_field, bench_field = self.fields["step"], self.fields["benchmarks"]
        assert isinstance(step_field, forms.ChoiceField) and isinstance(bench_field, forms.ChoiceField)
        step_field.choices = [(s, f"{s} (untrained base model)" if s == 0 else str(s)) for s in steps]
        self.fields["step"].initial = steps[-1]
        self.problems = {name: benchmark_problem(name, settings.PSL_DATA_DIR) for name in BENCHMARK_NAMES}
        bench_field.choices = [
            (name, BENCHMARKS[name].title + ("" if self.problems[name] is None else " — no data file"))
            for name in BENCHMARK_NAMES
        ]
        task = run.config.get("task", "")
        self.fields["benchmarks"].initial = [task] if task in BENCHMARKS else []
        self.fields["max_new_tokens"].initial = run.config.get("max_new_tokens", EVAL_SAMPLING.max_new_tokens)
        if not judge_configured():
            self.fields["judge"].disabled = True
            self.fields["judge"].help_text = "not configured (JUDGE_API_URL)"

    def clean_benchmarks(self) -> list[str]:
        chosen: list[str] = self.cleaned_data["benchmarks"]
        missing = [str(self.problems[b]) for b in chosen if self.problems.get(b)]
        if missing:
            raise forms.ValidationError(missing)
        return chosen

    def to_request(self) -> EvalRequest:
        d = self.cleaned_data
        return EvalRequest(
            step=d["step"],
            benchmarks=tuple(d["benchmarks"]),
            modes=tuple(d["modes"]),
            k=d["k"],
            limit=d["limit"],
            max_new_tokens=d["max_new_tokens"],
            temperature=d["temperature"],
            top_k=d["top_k"],
            top_p=d["top_p"],
            judge=bool(d.get("judge")),
        )


# --- the evaluations page ---------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def run_evaluations(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    can_write = can(request.user, run.project, Role.MEMBER)
    if request.method == "POST":
        require(request.user, run.project, Role.MEMBER)
        form = EvaluationForm(request.POST, run=run)
        if form.is_valid():
            try:
                evals = evaluations_create(run=run, request=form.to_request(), user=request.user)
            except ServiceError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Queued {len(evals)} evaluation{'s' if len(evals) != 1 else ''}.")
                return redirect("webapp-run-evaluations", run.pk)
        return render(request, "webapp/evaluations.html", _page_context(run, form, can_write), status=400)
    blank = EvaluationForm(run=run) if can_write else None
    return render(request, "webapp/evaluations.html", _page_context(run, blank, can_write))


def _page_context(run: Run, form: EvaluationForm | None, can_write: bool) -> dict[str, Any]:
    evals = list(run.evaluations.order_by("benchmark", "step", "mode"))
    found, alone = one_mode_only(evals)
    charts = pass_at_k_charts(evals)
    return {
        "run": run,
        "project": run.project,
        "nav": "runs",
        "form": form,
        "can_write": can_write,
        "tables": evaluation_tables(evals),
        "active": [ev for ev in evals if ev.status in ACTIVE],
        "one_mode": found,
        "one_mode_counts": alone,
        "passk_charts": charts,
        "judge_configured": judge_configured(),
        "data_dir": settings.PSL_DATA_DIR,
        "page_data": {
            "status_url": reverse("webapp-run-evaluations-status", args=[run.pk]),
            "token": _status_token(evals),
            "active": sum(ev.status in ACTIVE for ev in evals),
            "training": _training_series(run),
            "eval_kl": _eval_points(evals),
            "passk": [
                {"id": f"passk-{i}", "title": f"{c.title} · step {c.step}", "curves": c.curves}
                for i, c in enumerate(charts)
            ],
        },
    }


def _training_series(run: Run) -> dict[str, dict[str, dict[str, list[float]]]]:
    """KL between the modes and per-mode entropy over training steps; entropies nats → bits."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for chart, keys in TRAINING_KEYS.items():
        lines = {}
        for key in keys:
            s = metric_series(run, key, max_points=1000)
            if s.steps:
                values = [v / LN2 for v in s.values] if chart == "entropy" else s.values
                lines[key] = {"steps": [float(x) for x in s.steps], "values": values}
        out[chart] = lines
    return out


def _eval_points(evals: list[Evaluation]) -> list[dict[str, Any]]:
    """Inter-mode KL and entropy measured by each finished evaluation, for markers on the training charts."""
    points = []
    for ev in evals:
        m = ev.metrics or {}
        kl, ent = m.get("kl_to_other"), m.get("entropy_bits")
        if isinstance(kl, int | float) and isinstance(ent, int | float) and math.isfinite(kl):
            points.append({"benchmark": ev.benchmark, "step": ev.step, "mode": ev.mode, "kl": kl, "entropy": ent})
    return points


def _status_token(evals: list[Evaluation]) -> str:
    return ",".join(f"{ev.pk}:{ev.status}" for ev in sorted(evals, key=lambda e: e.pk))


@login_required
@require_GET
def run_evaluations_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Polled by the page while evaluations are queued or running: it reloads when the token changes."""
    run = run_for(request.user, pk)
    evals = list(run.evaluations.only("id", "status"))
    return JsonResponse({"token": _status_token(evals), "active": sum(ev.status in ACTIVE for ev in evals)})


# --- one evaluation's responses -------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _question_texts(benchmark: str, data_dir: str) -> dict[str, tuple[str, str]]:
    """id -> (prompt, answer) of a benchmark's questions, for display; {} when they cannot be loaded here."""
    try:
        bench = load_benchmark(benchmark, data_dir=data_dir)
    except (OSError, ValueError):
        return {}
    return {q.id: (q.prompt, q.answer) for q in bench.questions}


@login_required
@require_GET
def evaluation_detail(request: HttpRequest, pk: int, eval_pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    ev = run.evaluations.filter(pk=eval_pk).first()
    if ev is None:
        raise Http404("no such evaluation")
    results = EvalResult.objects.filter(evaluation=ev).order_by("question_id", "index")
    if qid := request.GET.get("q", ""):
        results = results.filter(question_id=qid)
    show = request.GET.get("show", "")
    qids = list(results.values_list("question_id", flat=True).distinct().order_by("question_id"))
    if show in ("correct", "wrong"):
        solved = set(results.filter(score__gt=0.5).values_list("question_id", flat=True))
        qids = [q for q in qids if (q in solved) == (show == "correct")]
    page = Paginator(qids, QUESTIONS_PER_PAGE).get_page(request.GET.get("page"))
    by_q: dict[str, list[EvalResult]] = {q: [] for q in page}
    for r in results.filter(question_id__in=list(page)):
        by_q[r.question_id].append(r)
    texts = _question_texts(ev.benchmark, str(settings.PSL_DATA_DIR))
    other = run.evaluations.filter(step=ev.step, benchmark=ev.benchmark).exclude(mode=ev.mode).first()
    per_prompt = (ev.metrics or {}).get("creative_per_prompt") or {}
    questions = [
        {
            "id": q,
            "prompt": texts.get(q, ("", ""))[0],
            "answer": texts.get(q, ("", ""))[1],
            "samples": rows,
            "correct": sum(r.score > 0.5 for r in rows),
            "creative": per_prompt.get(q),
        }
        for q, rows in by_q.items()
    ]
    return render(
        request,
        "webapp/evaluation_detail.html",
        {
            "run": run,
            "project": run.project,
            "nav": "runs",
            "evaluation": ev,
            "questions": questions,
            "page": page,
            "q": qid,
            "show": show,
            "other": other,
            "graded": (ev.metrics or {}).get("graded", True),
            "mode_label": MODE_LABELS.get(ev.mode, ev.mode),
            "title": BENCHMARKS[ev.benchmark].title if ev.benchmark in BENCHMARKS else ev.benchmark,
        },
    )


urlpatterns = [
    path("runs/<int:pk>/evaluations/", run_evaluations, name="webapp-run-evaluations"),
    path("runs/<int:pk>/evaluations/status/", run_evaluations_status, name="webapp-run-evaluations-status"),
    path("runs/<int:pk>/evaluations/<int:eval_pk>/", evaluation_detail, name="webapp-evaluation-detail"),
]
