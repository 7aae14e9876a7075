"""Runs pages: the runs list, launching runs and grids, the live run page and its JSON endpoints.

The run page polls ``run_status`` (healthchecks style): a change token, server-rendered header
and logs partials, and only the metric points newer than what the page already has.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST

from trainer.choices import LOG_LEVELS, MODES, PRIORITIES
from trainer.config import ConfigError, TrainConfig, config_values
from trainer.metrics import expand
from trainer.planner import MemoryPlan
from trainer.presets import Preset, all_presets, load_preset
from webapp import selectors
from webapp.forms import GridForm, RunForm, RunListForm
from webapp.http.access import can, project_for, require, run_for
from webapp.http.navigation import redirect_back
from webapp.http.params import ParamError, choice_param, int_param
from webapp.models import ACTIVE_STATUSES, Project, Role, Run
from webapp.planning import run_plan
from webapp.services import (
    FieldError,
    ServiceError,
    run_cancel,
    run_clone_initial,
    run_config,
    run_config_migration_notices,
    run_create,
    run_resume,
    run_stored_config,
    study_create_grid,
)
from webapp.views.review import review_context

PAGE_SIZE = 50
SEARCH_LIMIT = 20
LOG_LINES = 200
MAX_SERIES_KEYS = 24
MAX_NEW_POINTS = 5000

NORMAL, HE, GREY = "#1c7ed6", "#e8590c", "#868e96"


# --- runs list -------------------------------------------------------------------------------------


@login_required
@require_GET
def run_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    form = RunListForm(request.GET)
    sort = form.sort_value()
    runs = selectors.runs_for_list(project, filters=form.filters(), sort=sort)
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    column_ids = form.columns()
    columns = [selectors.column(c) for c in column_ids]
    rows = [(run, [(c, selectors.display(selectors.cell_value(run, c.id))) for c in columns]) for run in page]
    return render(
        request,
        "webapp/run_list.html",
        {
            "project": project,
            "nav": "runs",
            "form": form,
            "page": page,
            "rows": rows,
            "sort": sort,
            "headers": _headers(columns, sort),
            "column_ids": ",".join(column_ids),
            "priority_column": "priority" in column_ids,  # else non-default priorities show as badges
            "column_choices": _column_choices(column_ids, [run for run, _ in rows]),
            "tags": selectors.project_tags(project),
            "can_write": can(request.user, project, Role.MEMBER),
            "filtered": any(request.GET.get(k) for k in ("q", "status", "algorithm", "tag", "where"))
            or any(k.startswith("cfg.") for k in request.GET),
        },
    )


def _headers(columns: list[selectors.Column], sort: str) -> list[dict[str, Any]]:
    """Column headers with the sort each link applies: first click ascending, second descending."""
    current, descending = sort.lstrip("-"), sort.startswith("-")
    headers = []
    for col in columns:
        active = col.id == current
        headers.append(
            {
                "column": col,
                "state": ("desc" if descending else "asc") if active else "",
                "next": f"-{col.id}" if active and not descending else col.id,
            }
        )
    return headers


def _column_choices(chosen: list[str], runs: list[Run]) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    metric_keys = sorted(expand(MODES) | {k for run in runs for k in run.summary})
    groups = [
        ("Run", selectors.BASE_COLUMNS),
        ("Metrics (last value)", [f"m.{k}" for k in metric_keys]),
        ("Config", [f"cfg.{name}" for name in selectors.CONFIG_FIELDS if name != "extra"]),
    ]
    return [(title, [(c, selectors.column(c).label, c in chosen) for c in ids]) for title, ids in groups]


@login_required
@require_GET
def run_search(request: HttpRequest, project_id: int) -> JsonResponse:
    """Run pickers (compare, side by side): the newest runs matching ``?q=`` (name or id)."""
    project = project_for(request.user, project_id)
    runs = selectors.runs_search(project, request.GET.get("q", "")[:100], limit=SEARCH_LIMIT)
    results = [{"id": r.pk, "name": r.name, "status": r.status, "algorithm": r.algorithm, "seed": r.seed} for r in runs]
    return JsonResponse({"results": results})


@login_required
@require_POST
def run_bulk_cancel(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    require(request.user, project, Role.MEMBER)
    cancelled = 0
    for run in Run.objects.filter(
        project=project, pk__in=_ids(request.POST.getlist("run")), status__in=ACTIVE_STATUSES
    ):
        try:
            run_cancel(run=run, user=request.user)
            cancelled += 1
        except ServiceError:  # finished between the page load and the click
            pass
    if cancelled:
        messages.success(request, f"Cancelled {cancelled} run{'s' if cancelled != 1 else ''}.")
    else:
        messages.info(request, "None of the selected runs was queued or running.")
    return redirect_back(request, reverse("webapp-run-list", args=[project.pk]))


@login_required
@require_GET
def run_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """The list's "Compare" button without JavaScript: ?run=1&run=2 → the compare page's ?runs=1,2."""
    project = project_for(request.user, project_id)
    ids = _ids(request.GET.getlist("run"))
    return redirect(reverse("webapp-compare", args=[project.pk]) + "?runs=" + ",".join(map(str, ids)))


def _ids(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()][:500]


# --- launching --------------------------------------------------------------------------------------


@login_required
def run_new(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    require(request.user, project, Role.MEMBER)
    source = _clone_source(request)
    if request.method != "POST":
        preset = _preset(request)
        initial = _clone_initial(source) if source else _preset_initial(preset) if preset else None
        form = RunForm(initial=initial)
        return render(request, "webapp/run_form.html", _form_context(project, form, source, preset=preset))
    form = RunForm(request.POST)
    if form.is_valid():
        try:
            runs = _launch(project, request.user, form, parent=source)
        except FieldError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            if len(runs) == 1:
                return redirect(runs[0])
            seeds = ", ".join(str(r.seed) for r in runs)
            messages.success(request, f"Launched {len(runs)} runs (seeds {seeds}).")
            return redirect("webapp-run-list", project.pk)
    return render(request, "webapp/run_form.html", _form_context(project, form, source), status=400)


def _launch(project: Project, user: Any, form: RunForm, *, parent: Run | None) -> list[Run]:
    configs = form.to_configs()
    name = form.cleaned_data["name"]
    with transaction.atomic():
        return [
            run_create(
                project=project,
                user=user,
                config=cfg,
                name=f"{name} s{cfg.seed}" if name and len(configs) > 1 else name,
                queue=form.cleaned_data["queue"],
                tags=form.cleaned_data["tags"],
                wandb=form.cleaned_data["wandb"],
                parent=parent,
                override_fit=form.cleaned_data["override_fit"],
                priority=form.cleaned_data["priority"],
            )
            for cfg in configs
        ]


def _clone_source(request: HttpRequest) -> Run | None:
    raw = request.GET.get("clone", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise Http404("no such run")
    return run_for(request.user, int(raw))


def _clone_initial(run: Run) -> dict[str, Any]:
    initial = run_clone_initial(run)
    initial.update(seed=str(initial["seed"]), wandb=run.wandb_enabled, tags=", ".join(t.name for t in run.tags.all()))
    return initial


def _preset(request: HttpRequest) -> Preset | None:
    name = request.GET.get("preset", "")
    if not name:
        return None
    try:
        return load_preset(name)
    except ConfigError:
        raise Http404("no such preset") from None


def _preset_initial(preset: Preset) -> dict[str, Any]:
    """The form's fields pre-filled from a preset (still editable; the name is kept on the run)."""
    cfg = preset.config()
    return {**cfg.to_dict(), "seed": str(cfg.seed)}


def _form_context(project: Project, form: RunForm, source: Run | None, **extra: Any) -> dict[str, Any]:
    """The form plus the preset picker and the planner's estimate of the config in the form."""
    plan = form.plan if form.is_bound else _initial_plan(form)
    form.suggest_tasks(selectors.dataset_references(team_id=project.team_id))
    context = {"project": project, "nav": "runs", "form": form, "source": source, "plan": plan}
    notices = run_stored_config(source).notices if source else []
    return {**context, "config_notices": notices, "presets": all_presets(), "preset": None, **extra}


def _initial_plan(form: RunForm) -> MemoryPlan | None:
    data = {k: v for k, v in form.initial.items() if k in selectors.CONFIG_FIELDS}
    try:
        cfg = TrainConfig.from_dict({**data, "seed": int(str(data.get("seed", 0)).split(",")[0] or 0)})
    except (ConfigError, ValueError):
        return None
    return run_plan(cfg, str(form.fields["queue"].initial))


@login_required
def grid_new(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    require(request.user, project, Role.MEMBER)
    source = _clone_source(request)
    if request.method != "POST":
        form = GridForm(initial=_clone_initial(source) if source else None)
        return render(request, "webapp/run_grid.html", _form_context(project, form, source, preview=False))
    form = GridForm(request.POST)
    preview = bool(request.POST.get("preview"))
    if form.is_valid() and not preview:
        data = form.cleaned_data
        try:
            study = study_create_grid(
                project=project,
                user=request.user,
                name=data["name"],
                factors=data["factors"],
                cells=form.cells or [],
                queue=data["queue"],
                description=data["description"],
                wandb=data["wandb"],
                tags=data["tags"],
                override_fit=data["override_fit"],
                priority=data["priority"],
                search=form.search_settings(),
            )
        except ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Launched study “{study.name}” with {study.runs.count()} runs.")
            return redirect(study)
    status = 200 if preview and form.is_valid() else 400
    return render(request, "webapp/run_grid.html", _form_context(project, form, source, preview=preview), status=status)


# --- the run page -----------------------------------------------------------------------------------

CHARTS: list[dict[str, Any]] = [
    {
        "id": "reward",
        "title": "Reward and accuracy",
        "lines": [
            {"key": "normal/accuracy", "label": "normal accuracy", "color": NORMAL},
            {"key": "he/accuracy", "label": "HE accuracy", "color": HE},
            {"key": "train/reward", "label": "mean reward", "color": GREY, "dash": "dot"},
        ],
    },
    {
        "id": "eval",
        "title": "Held-out accuracy",
        "needs": "eval",
        "lines": [
            {"key": "eval/normal/accuracy", "label": "normal", "color": NORMAL},
            {"key": "eval/he/accuracy", "label": "HE", "color": HE},
        ],
    },
    {
        "id": "entropy",
        "title": "Entropy (nats)",
        "lines": [
            {"key": "normal/entropy", "label": "normal", "color": NORMAL},
            {"key": "he/entropy", "label": "HE", "color": HE},
            {"key": "actor/entropy", "label": "trained rows", "color": GREY, "dash": "dot"},
        ],
    },
    {
        "id": "kl",
        "title": "Inter-mode KL",
        "needs": "split",
        "lines": [
            {"key": "split/he_normal_kl", "label": "KL(HE‖normal)", "color": HE},
            {"key": "split/normal_he_kl", "label": "KL(normal‖HE)", "color": NORMAL},
        ],
    },
    {
        "id": "length",
        "title": "Response length (tokens)",
        "lines": [
            {"key": "normal/length", "label": "normal", "color": NORMAL},
            {"key": "he/length", "label": "HE", "color": HE},
        ],
    },
    {"id": "loss", "title": "Policy loss", "lines": [{"key": "actor/pg_loss", "label": "loss", "color": "#5f3dc4"}]},
    {
        "id": "clip",
        "title": "Clip fraction",
        "lines": [
            {"key": "actor/clip_frac", "label": "PPO clip", "color": "#2f9e44"},
            {"key": "actor/clip_frac_lower", "label": "dual clip", "color": GREY, "dash": "dot"},
        ],
    },
    {
        "id": "grad",
        "title": "Gradient norm",
        "lines": [{"key": "actor/grad_norm", "label": "grad norm", "color": "#c2255c"}],
    },
    {
        "id": "timing",
        "title": "Seconds per step",
        "stacked": True,
        "lines": [
            {"key": "timing/generate_s", "label": "generate", "color": "#4263eb"},
            {"key": "timing/score_s", "label": "score", "color": "#15aabf"},
            {"key": "timing/update_s", "label": "update", "color": "#fab005"},
        ],
    },
    {
        "id": "tps",
        "title": "Generated tokens / s",
        "lines": [{"key": "perf/tokens_per_s", "label": "tokens/s", "color": "#0ca678"}],
    },
]


SECONDS = "seconds of training"
SYSTEM_CHARTS: list[dict[str, Any]] = [
    {
        "id": "sys-cpu",
        "title": "CPU (%; 100 = one core)",
        "xTitle": SECONDS,
        "lines": [
            {"key": "system/cpu_percent", "label": "trainer", "color": "#4263eb"},
            {"key": "system/host_cpu_percent", "label": "host (100 = all cores)", "color": GREY, "dash": "dot"},
        ],
    },
    {
        "id": "sys-rss",
        "title": "Trainer memory (MB, resident)",
        "xTitle": SECONDS,
        "lines": [{"key": "system/rss_mb", "label": "RSS", "color": "#0ca678"}],
    },
    {
        "id": "sys-host-mem",
        "title": "Host memory in use (%)",
        "xTitle": SECONDS,
        "lines": [{"key": "system/host_memory_percent", "label": "host", "color": GREY}],
    },
]
GPU_COLORS = ("#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c", "#5c940d")


def system_charts_for(run: Run) -> list[dict[str, Any]]:
    """The System panel: CPU and memory always, GPU utilisation and memory per GPU of a GPU run."""
    charts = list(SYSTEM_CHARTS)
    if run.gpus:
        gpus = [(i, GPU_COLORS[i % len(GPU_COLORS)]) for i in range(run.gpus)]
        for metric, title in (("utilization_percent", "GPU utilisation (%)"), ("memory_used_mb", "GPU memory (MB)")):
            lines = [{"key": f"system/gpu{i}/{metric}", "label": f"GPU {i}", "color": c} for i, c in gpus]
            charts.append({"id": f"sys-gpu-{metric}", "title": title, "xTitle": SECONDS, "lines": lines})
    return charts


def charts_for(run: Run) -> list[dict[str, Any]]:
    """The charts that apply to the run: HE lines and the KL chart only under Policy Split."""
    split = run.algorithm == "policy_split"
    evals = bool(run.config.get("eval_every"))
    charts = []
    for chart in CHARTS:
        if (chart.get("needs") == "split" and not split) or (chart.get("needs") == "eval" and not evals):
            continue
        lines = [ln for ln in chart["lines"] if split or not ln["key"].startswith(("he/", "eval/he/"))]
        charts.append({**chart, "lines": lines})
    return charts


def chart_keys(run: Run) -> list[str]:
    return [line["key"] for chart in charts_for(run) for line in chart["lines"]]


@login_required
@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    reference = _reference_run(run)
    return render(
        request,
        "webapp/run_detail.html",
        {
            **_header_context(request, run),
            "project": run.project,
            "nav": "runs",
            "logs": selectors.recent_logs(run, limit=LOG_LINES),
            "log_levels": LOG_LEVELS,
            "checkpoints": run.checkpoints.all(),
            "config_rows": _config_rows(run, reference),
            "reference": reference,
            "tags": run.tags.all(),
            "page_data": {
                "statusUrl": reverse("webapp-run-status", args=[run.pk]),
                "seriesUrl": reverse("webapp-run-series", args=[run.pk]),
                "charts": charts_for(run),
                "systemCharts": system_charts_for(run),
                "finished": run.is_finished,
                "token": status_token(run),
            },
            **review_context(run, request.user),
        },
    )


# The header's "latest values" tiles: (metric key, label, mode class).
LATEST = [
    ("normal/accuracy", "normal accuracy", "mode-normal"),
    ("he/accuracy", "HE accuracy", "mode-he"),
    ("train/reward", "mean reward", ""),
    ("normal/entropy", "normal entropy", "mode-normal"),
    ("he/entropy", "HE entropy", "mode-he"),
    ("split/he_normal_kl", "KL(HE‖normal)", ""),
    ("actor/grad_norm", "grad norm", ""),
    ("perf/tokens_per_s", "tokens/s", ""),
]


def _header_context(request: HttpRequest, run: Run) -> dict[str, Any]:
    latest = [(label, selectors.display(run.summary[key]), css) for key, label, css in LATEST if key in run.summary]
    entry = selectors.queue_entry(run)
    return {
        "run": run,
        "can_write": can(request.user, run.project, Role.MEMBER),
        "queue_entry": entry,
        "starts_in": starts_in_text(entry.starts_in) if entry else "",
        "priorities": PRIORITIES,
        "latest": latest,
        "time_left": human_duration(run.time_left()),
        "duration": human_duration(run.duration()),
        "algorithm_label": selectors.ALGORITHM_LABELS.get(run.algorithm, run.algorithm),
    }


def starts_in_text(seconds: float | None) -> str:
    """A queued run's estimated start, as the run page and the queue page say it."""
    if seconds is None:
        return "start unknown (no step time yet)"
    if seconds < 1:
        return "starts on the next free worker"
    return "starts in ~" + human_duration(timedelta(seconds=seconds))


def human_duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _reference_run(run: Run) -> Run | None:
    """What the config is compared with: the parent (clone/resume), else the study's baseline."""
    if run.parent_id:
        return run.parent
    if run.study_id and run.study and run.study.baseline_id not in (None, run.pk):
        return run.study.baseline
    return None


def _config_rows(run: Run, reference: Run | None) -> list[dict[str, Any]]:
    try:
        values = run_config(run).to_dict()
    except Exception:  # an old row whose config no longer validates still shows what it stored
        values = config_values(run.config)
    ref = reference.config if reference else {}
    return [
        {
            "name": name,
            "value": selectors.display(value),
            "ref": selectors.display(ref.get(name)),
            "changed": bool(reference) and name in ref and ref.get(name) != value,
        }
        for name, value in values.items()
    ]


def status_token(run: Run) -> str:
    """Changes whenever the header or the logs would render differently (and on a new attempt)."""
    entry = selectors.queue_entry(run)  # a queued run's place moves as the runs ahead start
    place = f"{entry.position}:{entry.starts_in and round(entry.starts_in, -1)}:{run.priority}" if entry else ""
    return (
        f"{run.status}:{run.attempt}:{run.step}:{run.cancel_requested:d}:{run.last_checkpoint_step}:"
        f"{selectors.last_log_id(run)}:{place}"
    )


@login_required
@require_GET
def run_status(request: HttpRequest, pk: int) -> JsonResponse:
    run = run_for(request.user, pk)
    try:
        since = int_param(request.GET, "since")
        system_since = int_param(request.GET, "system_since")
        log_level = choice_param(request.GET, "log_level", LOG_LEVELS, "debug")
    except ParamError as exc:
        return JsonResponse({"error": str(exc), "field": exc.field}, status=400)
    token = f"{status_token(run)}:{log_level}"
    data: dict[str, Any] = {
        "token": token,
        "changed": request.GET.get("token") != token,
        "status": run.status,
        "finished": run.is_finished,
        "step": run.step,
        "total_steps": run.total_steps,
        "attempt": run.attempt,
    }
    if data["changed"]:
        ctx = {**_header_context(request, run), "logs": selectors.recent_logs(run, limit=LOG_LINES, level=log_level)}
        data["header_html"] = render_to_string("webapp/partials/run_header.html", ctx, request=request)
        data["logs_html"] = render_to_string("webapp/partials/run_logs.html", ctx, request=request)
        data["checkpoints_html"] = render_to_string(
            "webapp/partials/run_checkpoints.html", {"run": run, "checkpoints": run.checkpoints.all()}, request=request
        )
    if since is not None:
        keys = request.GET.getlist("key")[:MAX_SERIES_KEYS] or chart_keys(run)
        rows = selectors.new_points(run, keys, after_step=since, limit=MAX_NEW_POINTS + 1)
        data["reset"] = len(rows) > MAX_NEW_POINTS  # too far behind: the page refetches the series
        data["points"] = {} if data["reset"] else _group_points(rows)
    if system_since is not None:  # the System panel is open; its x axis is seconds, not steps
        keys = [line["key"] for chart in system_charts_for(run) for line in chart["lines"]]
        rows = selectors.new_points(run, keys, after_step=system_since, limit=MAX_NEW_POINTS + 1)
        data["system_reset"] = len(rows) > MAX_NEW_POINTS
        data["system_points"] = {} if data["system_reset"] else _group_points(rows)
    return JsonResponse(data)


def _group_points(rows: list[tuple[str, int, float]]) -> dict[str, list[list[float]]]:
    grouped: dict[str, list[list[float]]] = {}
    for key, step, value in rows:
        grouped.setdefault(key, []).append([step, value])
    return grouped


@login_required
@require_GET
def run_series(request: HttpRequest, pk: int) -> JsonResponse:
    run = run_for(request.user, pk)
    keys = [k for k in request.GET.getlist("key") if 0 < len(k) <= 80][:MAX_SERIES_KEYS]
    try:
        lo, hi = int_param(request.GET, "min_step"), int_param(request.GET, "max_step")
        points = min(selectors.MAX_SERIES_POINTS, max(10, int_param(request.GET, "points") or 2000))
    except ParamError as exc:
        return JsonResponse({"error": str(exc), "field": exc.field}, status=400)
    series = {k: selectors.metric_series(run, k, min_step=lo, max_step=hi, max_points=points).to_dict() for k in keys}
    return JsonResponse({"series": series, "min_step": lo, "max_step": hi, "points": points})


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    require(request.user, run.project, Role.MEMBER)
    try:
        run = run_cancel(run=run, user=request.user)
        messages.success(request, "Cancelled." if run.is_finished else "Asked the worker to stop the run.")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect(run)


@login_required
@require_POST
def run_resume_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    require(request.user, run.project, Role.MEMBER)
    notices = run_config_migration_notices(run)
    try:
        run = run_resume(run=run, user=request.user)
        messages.success(request, f"Resumed as attempt {run.attempt}.")
        if notices:
            messages.warning(request, "Its stored config was migrated to this version: " + "; ".join(notices) + ".")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect(run)


@login_required
@require_GET
def run_logs(request: HttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """The log of every attempt as plain text (a download: logs can be long); ``?level=`` filters."""
    run = run_for(request.user, pk)
    try:
        level = choice_param(request.GET, "level", LOG_LEVELS, "debug")
    except ParamError as exc:
        return HttpResponseBadRequest(str(exc))
    response = StreamingHttpResponse(_log_lines(run, level), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.log"'
    return response


def _log_lines(run: Run, level: str) -> Iterator[str]:
    dropped = selectors.dropped_output_lines(run)
    attempt = None
    for row in selectors.run_logs(run, level=level).iterator(chunk_size=2000):
        if row.attempt != attempt:
            attempt = row.attempt
            if n := dropped.get(attempt):
                yield f"[attempt {attempt}] … its first {n} output lines were dropped (PSL_LOG_MAX_LINES)\n"
        when = f"{row.created_at:%Y-%m-%d %H:%M:%S}"
        yield f"{when} [attempt {row.attempt}] {row.level.upper():7} {row.message}\n"


urlpatterns = [
    path("projects/<int:project_id>/runs/", run_list, name="webapp-run-list"),
    path("projects/<int:project_id>/runs/new/", run_new, name="webapp-run-create"),
    path("projects/<int:project_id>/runs/search/", run_search, name="webapp-run-search"),
    path("projects/<int:project_id>/runs/cancel/", run_bulk_cancel, name="webapp-run-bulk-cancel"),
    path("projects/<int:project_id>/runs/compare/", run_compare, name="webapp-run-compare-selected"),
    path("projects/<int:project_id>/grid/", grid_new, name="webapp-grid-create"),
    path("runs/<int:pk>/", run_detail, name="webapp-run-detail"),
    path("runs/<int:pk>/status/", run_status, name="webapp-run-status"),
    path("runs/<int:pk>/series/", run_series, name="webapp-run-series"),
    path("runs/<int:pk>/cancel/", run_cancel_view, name="webapp-run-cancel"),
    path("runs/<int:pk>/resume/", run_resume_view, name="webapp-run-resume"),
    path("runs/<int:pk>/logs/", run_logs, name="webapp-run-logs"),
]
