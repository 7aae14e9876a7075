"""Compare runs (overlay charts, seed bands, final metrics) and studies (ablations with a paper-style table).

Every piece of page state lives in the query string, so any view is a permalink. Table building
and export are in ``webapp.review.reports``; significance tests in ``webapp.review.stats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import path, reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from webapp import selectors
from webapp.http.access import can, project_for, require, study_for
from webapp.models import Project, Role, Run, Study, SummaryKind
from webapp.review.reports import (
    CONFIG_FIELD_NAMES,
    EXPORT_FORMATS,
    FIELD_SYMBOLS,
    NON_FACTOR_FIELDS,
    FinalTable,
    PaperTable,
    RunGroup,
    SummaryRule,
    config_value,
    final_export,
    final_table,
    format_value,
    group_of,
    group_runs,
    log_axes,
    paper_export,
    paper_table,
    parallel_coordinates,
    seed_band,
    study_group_fields,
    varied_fields,
)
from webapp.review.stats import DEFAULT_TEST, TEST_LABELS, TESTS
from webapp.services import ServiceError, study_set_baseline, study_set_included, study_set_summary

MAX_RUNS = 24
MAX_KEYS = 12
CHART_POINTS = 1000  # per run and key; larger series are min/max bucketed by metric_series
RUN_CHOICES = 20  # runs the compare picker offers besides the selected ones (newest, or matching its search)
BANDS = {"minmax": "min–max across seeds", "std": "mean ± std across seeds"}
# Shown when the user has not picked keys: the first of these that the runs logged.
DEFAULT_KEYS = (
    "normal/accuracy",
    "he/accuracy",
    "train/reward",
    "normal/entropy",
    "he/entropy",
    "split/he_normal_kl",
    "actor/entropy",
    "actor/pg_loss",
)
N_DEFAULT_KEYS = 4
# One colour per run or group (W&B-like: saturated, distinguishable, colour-blind friendly first).
PALETTE = (
    "#4c6ef5",
    "#f76707",
    "#2f9e44",
    "#e03131",
    "#7048e8",
    "#1098ad",
    "#d6336c",
    "#f59f00",
    "#5c940d",
    "#1c7ed6",
    "#ae3ec9",
    "#868e96",
)
REVIEW_PARTIAL = "webapp/partials/review_thread.html"


# --- page state ---------------------------------------------------------------------------------------


def _split(values: Iterable[str]) -> list[str]:
    """``?runs=1,2&runs=3`` -> ["1", "2", "3"]: accept the permalink and the form spelling, keep order."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


def _ints(values: Iterable[str]) -> list[int]:
    return [int(v) for v in _split(values) if v.isdigit()]


@dataclass(frozen=True)
class CompareState:
    runs: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    band: str = "minmax"
    baseline: int | None = None
    smooth: float = 0.0  # EMA weight applied in the browser (W&B-style), 0 = raw
    find: str = ""  # the run picker's search (the picker lists matches instead of every run)
    summary: SummaryRule = field(default_factory=SummaryRule)  # how the final-metrics table summarises each curve

    @classmethod
    def from_query(cls, qd: QueryDict) -> CompareState:
        runs = tuple(_ints(qd.getlist("runs")))[:MAX_RUNS]
        baseline = next(iter(_ints(qd.getlist("baseline"))), None)
        return cls(
            runs=runs,
            keys=tuple(k[:80] for k in _split(qd.getlist("keys")))[:MAX_KEYS],
            group=tuple(f for f in _split(qd.getlist("group")) if f in CONFIG_FIELD_NAMES and f != "seed"),
            band=qd.get("band", "") if qd.get("band") in BANDS else "minmax",
            baseline=baseline if baseline in runs else None,
            smooth=parse_smooth(qd.get("smooth", "")),
            find=qd.get("find", "").strip()[:100],
            summary=SummaryRule.from_query(qd),
        )

    def query(self, **changes: Any) -> str:
        """The canonical query string (comma lists, defaults left out) with ``changes`` applied."""
        s = replace(self, **changes)
        pairs: list[tuple[str, Any]] = []
        if s.runs:
            pairs.append(("runs", ",".join(map(str, s.runs))))
        if s.keys:
            pairs.append(("keys", ",".join(s.keys)))
        if s.group:
            pairs.append(("group", ",".join(s.group)))
        if s.band != "minmax":
            pairs.append(("band", s.band))
        if s.baseline:
            pairs.append(("baseline", s.baseline))
        if s.smooth:
            pairs.append(("smooth", f"{s.smooth:g}"))
        if s.find:
            pairs.append(("find", s.find))
        if s.summary != SummaryRule():
            pairs += [("summary", s.summary.kind), ("k", s.summary.k)]
        return urlencode(pairs, safe=",/")


def parse_smooth(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        return 0.0
    return round(min(max(value, 0.0), 0.99), 2) if value == value else 0.0  # value == value: not NaN


def _is_canonical(qd: QueryDict) -> bool:
    # A form submit repeats keys (runs=1&runs=2) and sends empty fields; the permalink does neither.
    return all(len(values) == 1 and values[0] for _, values in qd.lists())


# --- page defaults -----------------------------------------------------------------------------------


def default_keys(available: Sequence[str]) -> list[str]:
    preferred = [k for k in DEFAULT_KEYS if k in available]
    rest = [k for k in available if k not in preferred]
    return (preferred + rest)[:N_DEFAULT_KEYS]


# --- chart payload ----------------------------------------------------------------------------------------


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def paint(groups: Sequence[RunGroup]) -> list[RunGroup]:
    for i, group in enumerate(groups):
        group.color = color(i)
    return list(groups)


def chart_payload(groups: Sequence[RunGroup], keys: Sequence[str], *, band: str, grouped: bool) -> dict[str, Any]:
    """What static/js/compare.js draws: per key, one trace per group (mean line + band when grouped)."""
    runs = [r for g in groups for r in g.runs]
    series = selectors.load_series(runs, keys, max_points=CHART_POINTS)
    charts = []
    for key in keys:
        traces = []
        for i, group in enumerate(groups):
            own = [series[(r.pk, key)] for r in group.runs if (r.pk, key) in series]
            if not own:
                continue
            trace: dict[str, Any] = {"group": i, "name": group.label, "color": group.color or color(i)}
            if grouped and len(group.runs) > 1:
                b = seed_band(own)
                low, high = b.bounds(band)
                trace.update(steps=b.steps, values=b.mean, band={"low": low, "high": high}, n=b.n)
            else:
                trace.update(steps=own[0][0], values=own[0][1], band=None, n=None)
            traces.append(trace)
        charts.append({"key": key, "traces": traces})
    return {"charts": charts, "band": BANDS[band] if grouped else ""}


# --- compare ----------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Everything the compare page and its export show for one state."""

    runs: list[Run]
    groups: list[RunGroup]
    keys: list[str]
    available_keys: list[str]
    baseline: RunGroup | None
    table: FinalTable


def build_comparison(project: Project, state: CompareState) -> Comparison:
    runs = selectors.selected_runs(project, state.runs)
    available = selectors.metric_keys(runs)
    keys = list(state.keys) or default_keys(available)
    groups = paint(group_runs(runs, state.group))
    baseline = group_of(groups, state.baseline)
    table = final_table(groups, keys, baseline, rule=state.summary)
    return Comparison(runs, groups, keys, available, baseline, table)


def _group_choices(runs: Sequence[Run], state: CompareState) -> list[tuple[str, str, bool]]:
    """(field, label, checked) for the group-by picker: the algorithm, what varies, what is picked."""
    names = ["algorithm", *varied_fields(runs)]
    names += [f for f in state.group if f not in names]
    seen: list[str] = []
    for name in names:
        if name not in seen and name not in NON_FACTOR_FIELDS:
            seen.append(name)
    return [(n, FIELD_SYMBOLS.get(n, n), n in state.group) for n in seen]


def _picker(project: Project, c: Comparison, find: str) -> list[tuple[Run, str, bool]]:
    """(run, colour if selected, selected) for the run picker: the selected runs, then the newest
    others matching its search (never every run of the project)."""
    colors = {r.pk: g.color for g in c.groups for r in g.runs}
    choices = selectors.run_choices(project, c.runs, limit=RUN_CHOICES, find=find)
    return [(r, colors.get(r.pk, ""), r.pk in colors) for r in choices]


@login_required
def compare(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    state = CompareState.from_query(request.GET)
    if not _is_canonical(request.GET):
        return redirect(request.path + ("?" + state.query() if state.query() else ""))
    c = build_comparison(project, state)
    grouped = bool(state.group)
    context = {
        "project": project,
        "nav": "compare",
        "state": state,
        "cmp": c,
        "picker": _picker(project, c, state.find),
        "search_url": reverse("webapp-run-search", args=[project.pk]),
        "group_choices": _group_choices(c.runs, state),
        "key_choices": [(k, True) for k in c.keys] + [(k, False) for k in c.available_keys if k not in c.keys],
        "bands": BANDS,
        "grouped": grouped,
        "smooth": state.smooth,
        "charts_url": reverse("webapp-compare-data", args=[project.pk]) + "?" + state.query(find=""),
        "chart_keys": c.keys,
        "band_label": BANDS[state.band] if grouped else "",
        "permalink": request.build_absolute_uri(request.path + "?" + state.query()),
        "export_links": _export_links(reverse("webapp-compare-export", args=[project.pk]), state.query()),
        "summary_links": [
            (rule.label, "?" + state.query(summary=rule), rule == state.summary)
            for rule in summary_choices(state.summary)
        ],
    }
    return render(request, "webapp/compare.html", context)


@login_required
def compare_data(request: HttpRequest, project_id: int) -> JsonResponse:
    """The compare page's chart data, fetched by its script (the HTML carries none of it)."""
    project = project_for(request.user, project_id)
    state = CompareState.from_query(request.GET)
    runs = selectors.selected_runs(project, state.runs)
    keys = list(state.keys) or default_keys(selectors.metric_keys(runs))
    groups = paint(group_runs(runs, state.group))
    return JsonResponse(chart_payload(groups, keys, band=state.band, grouped=bool(state.group)))


@login_required
def compare_export(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    fmt = request.GET.get("format", "")
    if fmt not in EXPORT_FORMATS:
        return HttpResponseBadRequest(f"format must be one of: {', '.join(EXPORT_FORMATS)}")
    c = build_comparison(project, CompareState.from_query(request.GET))
    table = final_export(c.table, split=EXPORT_FORMATS[fmt][3])
    stem = f"{slugify(project.name)}-compare"
    return _download(table_text=EXPORT_FORMATS[fmt][2](table), fmt=fmt, stem=stem)


def _export_links(base: str, query: str, **extra: str) -> list[tuple[str, str]]:
    labels = {"csv": "CSV", "md": "Markdown", "tex": "LaTeX"}
    prefix = query + "&" if query else ""
    return [(labels[f], f"{base}?{prefix}{urlencode({**extra, 'format': f})}") for f in EXPORT_FORMATS]


def _download(*, table_text: str, fmt: str, stem: str) -> HttpResponse:
    content_type, ext, _, _ = EXPORT_FORMATS[fmt]
    response = HttpResponse(table_text, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{stem or "table"}.{ext}"'
    return response


# --- studies ----------------------------------------------------------------------------------------------


@login_required
def study_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    studies = list(selectors.studies_with_counts(project))
    counts = selectors.study_member_counts(studies)
    context = {
        "project": project,
        "nav": "studies",
        "studies": studies,
        "rows": [(s, counts[s.pk]) for s in studies],
        "can_write": can(request.user, project, Role.MEMBER),
    }
    return render(request, "webapp/study_list.html", context)


@dataclass
class StudyView:
    """A study's runs grouped into methods, with its tables (shared by the page and the export)."""

    study: Study
    runs: list[Run]  # the runs the tables and curves count (see members)
    members: list[selectors.StudyMember]
    group_fields: list[str]
    groups: list[RunGroup]
    baseline: RunGroup | None
    keys: list[str]
    test: str
    final: FinalTable
    paper: PaperTable | None
    summary: SummaryRule


def build_study(study: Study, qd: QueryDict) -> StudyView:
    members = selectors.study_members(study)
    runs = [m.run for m in members if m.included]
    fields = study_group_fields(study.factors, runs)
    groups = paint(group_runs(runs, fields))
    baseline = group_of(groups, study.baseline_id)
    keys = [k[:80] for k in _split(qd.getlist("keys"))][:MAX_KEYS] or default_keys(selectors.metric_keys(runs))
    test = qd.get("test", "") if qd.get("test") in TESTS else DEFAULT_TEST
    summary = SummaryRule.from_query(qd, study_summary(study))
    return StudyView(
        study,
        runs,
        members,
        fields,
        groups,
        baseline,
        keys,
        test,
        final_table(groups, keys, baseline, rule=summary),
        paper_table(groups, baseline, test=test),
        summary,
    )


def study_summary(study: Study) -> SummaryRule:
    """The study's own summary rule (the page's ?summary=&k= may override it)."""
    return SummaryRule(study.summary_kind, study.summary_k)


def _factor_names(study: Study, runs: Sequence[Run]) -> list[str]:
    """The declared factors, or what varies when none are declared (seed included)."""
    return [f for f in study.factors if f in CONFIG_FIELD_NAMES] or [*varied_fields(runs), "seed"]


def _factor_rows(study: Study, runs: Sequence[Run]) -> list[tuple[str, str, list[str]]]:
    """(field, label, values) of the declared factors, or of what varies when none are declared."""
    rows = []
    for name in _factor_names(study, runs):
        declared = study.factors.get(name)
        values = (
            declared
            if isinstance(declared, list)
            else sorted({format_value(r.seed if name == "seed" else r.config.get(name)) for r in runs})
        )
        rows.append((name, FIELD_SYMBOLS.get(name, name), [format_value(v) for v in values]))
    return rows


@dataclass(frozen=True)
class StudyRunRow:
    member: selectors.StudyMember
    values: list[str]
    color: str
    is_baseline: bool

    @property
    def run(self) -> Run:
        return self.member.run


def _study_run_rows(sv: StudyView, names: Sequence[str]) -> list[StudyRunRow]:
    """Every run of the study (excluded ones too, marked) with its factor values and group colour."""
    colors = {r.pk: g.color for g in sv.groups for r in g.runs}
    return [
        StudyRunRow(
            m,
            [format_value(config_value(m.run, n)) for n in names],
            colors.get(m.run.pk, ""),
            m.run.pk == sv.study.baseline_id,
        )
        for m in sv.members
    ]


def _review_context(study: Study, user: Any) -> dict[str, Any]:
    """The review thread (another module) when it is installed; the page works without it."""
    try:
        get_template(REVIEW_PARTIAL)
        from webapp.views.review import review_context
    except (TemplateDoesNotExist, ImportError):
        return {"has_review": False}
    return {"has_review": True, **review_context(study, user)}


@login_required
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    study = study_for(request.user, pk)
    band = request.GET.get("band", "") if request.GET.get("band") in BANDS else "minmax"
    smooth = parse_smooth(request.GET.get("smooth", ""))
    sv = build_study(study, request.GET)
    factors = _factor_rows(study, [m.run for m in sv.members])
    query = {"keys": ",".join(sv.keys), "test": sv.test, **({"smooth": f"{smooth:g}"} if smooth else {})}
    compare_state = CompareState(
        runs=tuple(r.pk for r in sv.runs)[:MAX_RUNS],
        keys=tuple(sv.keys),
        group=tuple(sv.group_fields),
        baseline=study.baseline_id,
    )
    context = {
        "project": study.project,
        "nav": "studies",
        "study": study,
        "sv": sv,
        "excluded": [m for m in sv.members if not m.included],
        "factors": factors,
        "factor_names": [name for name, _, _ in factors],
        "band": band,
        "bands": BANDS,
        "smooth": smooth,
        "run_rows": _study_run_rows(sv, [name for name, _, _ in factors]),
        "parcoords_url": reverse("webapp-study-parcoords", args=[study.pk]),
        "outcome": default_outcome(study, selectors.metric_keys(sv.runs)),
        "search_text": search_text(study.search or {}),
        "charts_url": reverse("webapp-study-charts", args=[study.pk])
        + "?"
        + urlencode({**query, "band": band}, safe=",/"),
        "chart_keys": sv.keys,
        "can_write": can(request.user, study.project, Role.MEMBER),
        "tests": [(k, TEST_LABELS[k], k == sv.test) for k in TESTS],
        "compare_url": reverse("webapp-compare", args=[study.project_id]) + "?" + compare_state.query(),
        "paper_exports": _export_links(
            reverse("webapp-study-export", args=[study.pk]), "", table="paper", test=sv.test
        ),
        "final_exports": _export_links(
            reverse("webapp-study-export", args=[study.pk]),
            urlencode({"keys": query["keys"], "summary": sv.summary.kind, "k": sv.summary.k}, safe=",/"),
            table="final",
        ),
        "summary_links": [
            (rule.label, "?" + urlencode({**query, "summary": rule.kind, "k": rule.k}, safe=",/"), rule == sv.summary)
            for rule in summary_choices(sv.summary)
        ],
        "summary_form": {
            "url": reverse("webapp-study-summary", args=[study.pk]),
            "kinds": SummaryKind.choices,
            "rule": study_summary(study),
        },
        "band_links": [(k, label, "?" + urlencode({**query, "band": k}, safe=",/")) for k, label in BANDS.items()],
        "test_links": [
            (k, TEST_LABELS[k], "?" + urlencode({**query, "test": k, "band": band}, safe=",/")) for k in TESTS
        ],
    }
    context.update(_review_context(study, request.user))
    return render(request, "webapp/study_detail.html", context)


@login_required
def study_charts(request: HttpRequest, pk: int) -> JsonResponse:
    """The study page's chart data (same shape as the compare page's), fetched by its script."""
    study = study_for(request.user, pk)
    band = request.GET.get("band", "") if request.GET.get("band") in BANDS else "minmax"
    runs = selectors.study_included_runs(study)
    groups = paint(group_runs(runs, study_group_fields(study.factors, runs)))
    keys = [k[:80] for k in _split(request.GET.getlist("keys"))][:MAX_KEYS] or default_keys(selectors.metric_keys(runs))
    return JsonResponse(chart_payload(groups, keys, band=band, grouped=True))


def search_text(search: dict[str, Any]) -> list[str]:
    """How the study chose and pruned its runs, in a few words each (empty for a plain grid)."""
    lines = []
    if search.get("kind") == "random":
        lines.append(f"random search: {search.get('samples')} draws, seed {search.get('seed')}")
        lines.extend(f"{name} ~ {dist}" for name, dist in (search.get("space") or {}).items())
    if halving := search.get("halving"):
        rungs = ", ".join(str(r) for r in halving.get("rungs", []))
        better = "higher" if halving.get("mode") == "max" else "lower"
        lines.append(
            f"successive halving on {halving.get('metric')} ({better} is better) at steps {rungs}, "
            f"keeping the best 1/{halving.get('reduction')}"
        )
    return lines


def default_outcome(study: Study, available: Sequence[str]) -> str:
    """What the parallel-coordinates chart ranks by unless asked: the metric a search stops runs
    by, else the first of the default chart keys the runs logged."""
    halving = (study.search or {}).get("halving") or {}
    if halving.get("metric") in available:
        return str(halving["metric"])
    return next((k for k in DEFAULT_KEYS if k in available), available[0] if available else "")


@login_required
def study_parcoords(request: HttpRequest, pk: int) -> JsonResponse:
    """The study's counted runs as parallel coordinates: each factor, then ?outcome= (a summary key)."""
    study = study_for(request.user, pk)
    runs = selectors.study_included_runs(study)
    available = selectors.metric_keys(runs)
    outcome = request.GET.get("outcome", "")
    if outcome not in available:
        outcome = default_outcome(study, available)
    data = parallel_coordinates(runs, _factor_names(study, runs), outcome, log=log_axes(study.search or {}))
    return JsonResponse({**data, "outcomes": available})


@login_required
@require_POST
def study_baseline(request: HttpRequest, pk: int) -> HttpResponse:
    study = study_for(request.user, pk)
    require(request.user, study.project, Role.MEMBER)
    run_id = request.POST.get("run", "")
    run = get_object_or_404(Run, pk=int(run_id), study=study) if run_id.isdigit() else None
    if run is None:
        return HttpResponseBadRequest("pick a run of this study")
    study_set_baseline(study=study, run=run, user=request.user)
    messages.success(request, f"Baseline set to “{run.name}”.")
    return redirect(study)


def summary_choices(current: SummaryRule) -> list[SummaryRule]:
    """The summaries a table offers: the mean of the last k steps (the current k) and the last value."""
    k = current.k if current.kind == SummaryKind.MEAN_LAST else SummaryRule().k
    return [SummaryRule(SummaryKind.MEAN_LAST, k), SummaryRule(SummaryKind.LAST, k)]


@login_required
@require_POST
def study_summary_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Save how the study's final-metrics table summarises each run (members and admins)."""
    study = study_for(request.user, pk)
    require(request.user, study.project, Role.MEMBER)
    raw_k = request.POST.get("k", "").strip()
    try:
        study_set_summary(
            study=study, kind=request.POST.get("summary", ""), k=int(raw_k) if raw_k.isdigit() else 0, user=request.user
        )
    except ServiceError as exc:
        return HttpResponseBadRequest(str(exc))
    messages.success(request, f"Final metrics now show the {study_summary(study).label} of each run.")
    return redirect(study)


@login_required
@require_POST
def study_run_inclusion(request: HttpRequest, pk: int, run_id: int) -> HttpResponse:
    """Count one run in the study's tables and curves, or leave it out (stored with the study)."""
    study = study_for(request.user, pk)
    require(request.user, study.project, Role.MEMBER)
    run = get_object_or_404(Run, pk=run_id, study=study)
    include = request.POST.get("include") == "1"
    study_set_included(study=study, run=run, include=include, user=request.user)
    messages.success(
        request, f"“{run.name}” is {'counted in' if include else 'left out of'} the study's tables and curves."
    )
    return redirect(study)


@login_required
def study_export(request: HttpRequest, pk: int) -> HttpResponse:
    study = study_for(request.user, pk)
    fmt, which = request.GET.get("format", ""), request.GET.get("table", "paper")
    if fmt not in EXPORT_FORMATS or which not in ("paper", "final"):
        return HttpResponseBadRequest("format must be csv, md or tex; table must be paper or final")
    sv = build_study(study, request.GET)
    split = EXPORT_FORMATS[fmt][3]
    if which == "paper":
        if sv.paper is None:
            return HttpResponseBadRequest("this study has no finished evaluations yet")
        table = paper_export(sv.paper, split=split)
    else:
        table = final_export(sv.final, split=split)
    table.title = f"{study.name}: {table.title}"
    return _download(table_text=EXPORT_FORMATS[fmt][2](table), fmt=fmt, stem=f"{slugify(study.name)}-{which}")


urlpatterns = [
    path("projects/<int:project_id>/compare/", compare, name="webapp-compare"),
    path("projects/<int:project_id>/compare/data/", compare_data, name="webapp-compare-data"),
    path("projects/<int:project_id>/compare/export/", compare_export, name="webapp-compare-export"),
    path("projects/<int:project_id>/studies/", study_list, name="webapp-study-list"),
    path("studies/<int:pk>/", study_detail, name="webapp-study-detail"),
    path("studies/<int:pk>/charts/", study_charts, name="webapp-study-charts"),
    path("studies/<int:pk>/parcoords/", study_parcoords, name="webapp-study-parcoords"),
    path("studies/<int:pk>/baseline/", study_baseline, name="webapp-study-baseline"),
    path("studies/<int:pk>/runs/<int:run_id>/inclusion/", study_run_inclusion, name="webapp-study-run-inclusion"),
    path("studies/<int:pk>/export/", study_export, name="webapp-study-export"),
    path("studies/<int:pk>/summary/", study_summary_view, name="webapp-study-summary"),
]
