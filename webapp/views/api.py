"""The JSON API under /api/ (docs/api.md): projects, runs, metrics, samples and evaluations.

Authentication and JSON errors come from ``webapp.http.api_auth.api_view``; access goes through the
same helpers as the pages (other teams' objects are 404, viewers get 403 on writes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, path, re_path, resolve, reverse
from django.views.decorators.csrf import csrf_exempt

from trainer.choices import ALGORITHMS, DEFAULT_PRIORITY, LOG_LEVELS, PRIORITIES
from trainer.config import MAX_BIGINT, ConfigError, TrainConfig
from webapp import datasets as dataset_service
from webapp import selectors
from webapp import teams as team_service
from webapp.http.access import project_for, require, run_for, team_for
from webapp.http.api_auth import ApiError, api_view, error_response
from webapp.http.params import bool_param, check_text, int_param
from webapp.models import (
    SAMPLE_VALUE_FIELDS,
    Checkpoint,
    Dataset,
    Evaluation,
    Membership,
    Mode,
    Project,
    Role,
    Run,
    RunLog,
    RunStatus,
    Sample,
    Study,
    Tag,
)
from webapp.selectors import MAX_SERIES_POINTS, metric_series, run_logs
from webapp.services import FieldError, IdempotencyConflict, ServiceError, run_cancel, run_create, run_create_once

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_SAMPLE_LIMIT = 500
MAX_SAMPLE_TOKENS_LIMIT = 100
MAX_KEYS = 20
MAX_LOG_LIMIT = 2000
DEFAULT_POINTS = 1000
MAX_PAGE = 1_000_000_000  # with MAX_LIMIT rows a page, the offset stays far inside a bigint
MAX_TAGS = 100
# Keys of a create-run body that are not TrainConfig fields.
RUN_META_FIELDS = ("name", "queue", "tags", "wandb", "study", "priority")


# --- input helpers ----------------------------------------------------------------------------------


def _choice_param(request: HttpRequest, name: str, choices: Iterable[str]) -> str:
    value = request.GET.get(name, "")
    valid = list(choices)
    if value and value not in valid:
        raise ApiError(400, f"unknown {name} {value!r}; valid: {', '.join(valid)}", field=name)
    return value


def _json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _page(request: HttpRequest, qs: QuerySet[Any], *, most: int = MAX_LIMIT) -> tuple[list[Any], dict[str, Any]]:
    """Slice a query set by ?page= (from 1) and ?limit= (at most ``most``); the items and the paging fields.

    Every list of the API pages this one way (docs/api.md, "Pagination").
    """
    if "offset" in request.GET:
        raise ApiError(400, "the API pages with ?page= (from 1) and ?limit=, not ?offset=", field="offset")
    limit = int_param(request.GET, "limit", DEFAULT_LIMIT, minimum=1, maximum=most) or DEFAULT_LIMIT
    page = int_param(request.GET, "page", 1, minimum=1, maximum=MAX_PAGE) or 1
    count = qs.count()
    items = list(qs[(page - 1) * limit : page * limit])
    pages = max(1, -(-count // limit))

    def link(n: int) -> str | None:
        if n < 1 or n > pages:
            return None
        query = request.GET.copy()
        query["page"] = str(n)
        return request.build_absolute_uri(request.path + "?" + query.urlencode())

    return items, {
        "count": count,
        "page": page,
        "pages": pages,
        "limit": limit,
        "next": link(page + 1),
        "previous": link(page - 1) if page <= pages else None,
    }


# --- representations ---------------------------------------------------------------------------------


def _project_json(project: Project, role: str) -> dict[str, Any]:
    return {
        "id": project.pk,
        "name": project.name,
        "slug": project.slug,
        "team": project.team.name,
        "description": project.description,
        "role": role,
        "created_at": project.created_at,
        "runs_url": reverse("api-project-runs", args=[project.pk]),
    }


def _run_json(run: Run, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.pk,
        "project": run.project_id,
        "name": run.name,
        "algorithm": run.algorithm,
        "model": run.model_name,
        "seed": run.seed,
        "status": run.status,
        "queue": run.queue,
        "priority": run.priority_name,
        "gpus": run.gpus,
        "step": run.step,
        "total_steps": run.total_steps,
        "progress": round(run.progress, 4),
        "created_by": run.created_by.username if run.created_by else None,
        "created_at": run.created_at,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "study": run.study_id,
        "tags": [t.name for t in run.tags.all()],
        "summary": run.summary,
        "url": run.get_absolute_url(),
        "api_url": reverse("api-run", args=[run.pk]),
    }
    if full:
        time_left = run.time_left()
        data.update(
            {
                "config": run.config,
                "error": run.error,
                "attempt": run.attempt,
                "parent": run.parent_id,
                "host": run.host,
                "heartbeat_at": run.heartbeat_at,
                "cancel_requested": run.cancel_requested,
                "code_version": run.code_version,
                "last_checkpoint_step": run.last_checkpoint_step,
                "checkpoints": [_checkpoint_json(c) for c in run.checkpoints.all()],
                "time_left_seconds": round(time_left.total_seconds()) if time_left else None,
                "wandb_run_id": run.wandb_run_id or None,
            }
        )
    return data


def _checkpoint_json(ckpt: Checkpoint) -> dict[str, Any]:
    """A checkpoint by the reference a run's ``model`` or an evaluation names it with, never its path."""
    return {"step": ckpt.step, "reference": ckpt.reference, "created_at": ckpt.created_at}


SAMPLE_FIELDS = ("id", *SAMPLE_VALUE_FIELDS)


def _sample_json(sample: Sample, *, tokens: bool) -> dict[str, Any]:
    data = {name: getattr(sample, name) for name in SAMPLE_FIELDS}
    data["is_correct"] = sample.is_correct
    if tokens:
        data.update(tokens=sample.tokens, surprisal=sample.surprisal)
    return data


def _log_json(line: RunLog) -> dict[str, Any]:
    return {
        "id": line.pk,
        "attempt": line.attempt,
        "source": line.source,
        "level": line.level,
        "time": line.created_at,
        "message": line.message,
    }


def _evaluation_json(ev: Evaluation) -> dict[str, Any]:
    return {
        "id": ev.pk,
        "run": ev.run_id,
        "step": ev.step,
        "benchmark": ev.benchmark,
        "mode": ev.mode,
        "status": ev.status,
        "model": ev.model_reference,
        "settings": ev.shown_settings,
        "metrics": ev.metrics,
        "error": ev.error,
        "n_results": getattr(ev, "n_results", None),
        "created_at": ev.created_at,
        "finished_at": ev.finished_at,
    }


def _run_queryset() -> QuerySet[Run]:
    return Run.objects.select_related("created_by").prefetch_related("tags")


# --- projects and runs ---------------------------------------------------------------------------------


@api_view("GET")
def projects(request: HttpRequest) -> HttpResponse:
    user: Any = request.user  # authenticated by api_view
    roles = dict(Membership.objects.filter(user=user).values_list("team_id", "role"))
    qs = Project.objects.for_user(user).select_related("team").order_by("team__name", "name")
    return JsonResponse({"results": [_project_json(p, roles.get(p.team_id, "")) for p in qs]})


@api_view("GET", "POST")
def project_runs(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    if request.method == "POST":
        return _create_run(request, project)
    qs = _run_queryset().filter(project=project)
    if status := _choice_param(request, "status", RunStatus.values):
        qs = qs.filter(status=status)
    if algorithm := _choice_param(request, "algorithm", ALGORITHMS):
        qs = qs.filter(algorithm=algorithm)
    if tag := request.GET.get("tag", ""):
        qs = qs.filter(tags__name=tag)
    items, paging = _page(request, qs.order_by("-created_at", "-id"))
    return JsonResponse({**paging, "results": [_run_json(r) for r in items]})


def _create_run(request: HttpRequest, project: Project) -> HttpResponse:
    require(request.user, project, Role.MEMBER)
    key = _idempotency_key(request)
    body = _json_object(request)
    fingerprint = hashlib.sha256(json.dumps([project.pk, body], sort_keys=True).encode()).hexdigest()
    meta = {k: body.pop(k) for k in RUN_META_FIELDS if k in body}
    name, queue, tags, wandb, study = _run_meta(meta, project)
    priority = meta.get("priority", DEFAULT_PRIORITY)
    if priority not in PRIORITIES:
        raise ApiError(400, f"unknown priority {priority!r}; valid: {', '.join(PRIORITIES)}", field="priority")
    try:
        config = TrainConfig.from_dict(body)
    except ConfigError as exc:
        raise ApiError(400, exc.message, field=exc.field) from None
    create: dict[str, Any] = dict(
        project=project, config=config, name=name, queue=queue, tags=tags, wandb=wandb, study=study, priority=priority
    )
    replayed = False
    try:
        if key:
            run, created = run_create_once(key=key, fingerprint=fingerprint, user=request.user, **create)
            replayed = not created
        else:
            run = run_create(user=request.user, **create)
    except IdempotencyConflict as exc:
        raise ApiError(422, str(exc), field=IDEMPOTENCY_HEADER) from None
    except FieldError as exc:
        raise ApiError(400, exc.message, field=exc.field) from None
    except ServiceError as exc:
        raise ApiError(400, str(exc)) from None
    response = JsonResponse(_run_json(_run_queryset().get(pk=run.pk), full=True), status=201)
    response["Location"] = reverse("api-run", args=[run.pk])
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 200


def _idempotency_key(request: HttpRequest) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        message = f"must be at most {MAX_IDEMPOTENCY_KEY} printable ASCII characters (a UUID, say)"
        raise ApiError(400, message, field=IDEMPOTENCY_HEADER)
    return key


def _run_meta(meta: dict[str, Any], project: Project) -> tuple[str, str, list[str], bool, Study | None]:
    name = check_text("name", meta.get("name", ""), max_length=Run._meta.get_field("name").max_length or 0)
    queue = meta.get("queue", "")
    if not isinstance(queue, str) or (queue and queue not in settings.PSL_QUEUES):
        valid = ", ".join(settings.PSL_QUEUES)
        raise ApiError(400, f"unknown queue {queue!r}; valid: {valid}", field="queue")
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or len(tags) > MAX_TAGS:
        raise ApiError(400, f"tags must be a list of at most {MAX_TAGS} strings", field="tags")
    tag_length = Tag._meta.get_field("name").max_length or 0
    tags = [check_text("tags", t, max_length=tag_length) for t in tags]
    wandb = meta.get("wandb", False)
    if not isinstance(wandb, bool):
        raise ApiError(400, "wandb must be true or false", field="wandb")
    study = None
    if (study_id := meta.get("study")) is not None:
        valid_id = isinstance(study_id, int) and not isinstance(study_id, bool) and 0 < study_id <= MAX_BIGINT
        study = Study.objects.filter(project=project, pk=study_id).first() if valid_id else None
        if study is None:
            raise ApiError(400, "study must be the id of a study of this project", field="study")
    return name, queue, tags, wandb, study


@api_view("GET")
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    return JsonResponse(_run_json(_run_queryset().get(pk=run.pk), full=True))


@api_view("POST")
def run_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    require(request.user, run.project, Role.MEMBER)
    try:
        run_cancel(run=run, user=request.user)
    except ServiceError as exc:
        raise ApiError(409, str(exc)) from None
    return JsonResponse(_run_json(_run_queryset().get(pk=run.pk), full=True))


# --- run data --------------------------------------------------------------------------------------------


@api_view("GET")
def run_metrics(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    keys = list(dict.fromkeys(k for k in request.GET.getlist("key") if k))
    if not keys:
        available = ", ".join(sorted(run.summary)) or "none yet"
        raise ApiError(400, f"pass one or more ?key=; this run logged: {available}", field="key")
    if len(keys) > MAX_KEYS:
        raise ApiError(400, f"at most {MAX_KEYS} keys per request", field="key")
    min_step = int_param(request.GET, "min_step")
    max_step = int_param(request.GET, "max_step")
    points = int_param(request.GET, "points", DEFAULT_POINTS, minimum=2, maximum=MAX_SERIES_POINTS) or DEFAULT_POINTS
    series = {k: metric_series(run, k, min_step=min_step, max_step=max_step, max_points=points).to_dict() for k in keys}
    return JsonResponse({"run": run.pk, "series": series})


@api_view("GET")
def run_samples(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    tokens = bool_param(request.GET, "tokens")
    # The packed heatmap columns are left out unless asked for.
    qs = (Sample.objects.with_tokens() if tokens else Sample.objects.all()).filter(run=run)
    if (step := int_param(request.GET, "step")) is not None:
        qs = qs.filter(step=step)
    if question_id := request.GET.get("question_id", ""):
        qs = qs.filter(question_id=question_id)
    if mode := _choice_param(request, "mode", Mode.values):
        qs = qs.filter(mode=mode)
    most = MAX_SAMPLE_TOKENS_LIMIT if tokens else MAX_SAMPLE_LIMIT  # token arrays are most of a sample's size
    rows, paging = _page(request, qs.order_by("step", "question_id", "mode", "context", "index", "id"), most=most)
    return JsonResponse({**paging, "results": [_sample_json(s, tokens=tokens) for s in rows]})


@api_view("GET")
def run_log_lines(request: HttpRequest, pk: int) -> HttpResponse:
    """The run's log, oldest first: ``?tail=N`` the newest N lines, else pages; ``?after=<id>`` only
    lines stored after that one (poll with the last id you saw); ``?level=``, ``?attempt=`` filter."""
    run = run_for(request.user, pk)
    level = _choice_param(request, "level", LOG_LEVELS) or "debug"
    qs = run_logs(run, level=level, attempt=int_param(request.GET, "attempt", minimum=0))
    if (after := int_param(request.GET, "after", minimum=0)) is not None:
        qs = qs.filter(pk__gt=after)
    if (tail := int_param(request.GET, "tail", minimum=1, maximum=MAX_LOG_LIMIT)) is not None:
        lines = list(qs.reverse()[:tail])[::-1]
        return JsonResponse({"run": run.pk, "count": len(lines), "results": [_log_json(x) for x in lines]})
    lines, paging = _page(request, qs, most=MAX_LOG_LIMIT)
    return JsonResponse({"run": run.pk, **paging, "results": [_log_json(x) for x in lines]})


@api_view("GET")
def run_evaluations(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    qs = run.evaluations.select_related("run").annotate(n_results=Count("results"))
    qs = qs.order_by("step", "benchmark", "mode")
    if benchmark := request.GET.get("benchmark", ""):
        qs = qs.filter(benchmark=benchmark)
    if mode := _choice_param(request, "mode", Mode.values):
        qs = qs.filter(mode=mode)
    return JsonResponse({"run": run.pk, "results": [_evaluation_json(ev) for ev in qs]})


# --- teams (webapp.teams holds the rules; the role matrix is in its docstring) ----------------------------


def _member_json(m: Membership) -> dict[str, Any]:
    return {"id": m.pk, "username": m.user.username, "role": m.role}


@api_view("GET")
def teams(request: HttpRequest) -> HttpResponse:
    user: Any = request.user  # authenticated by api_view
    rows = Membership.objects.filter(user=user).select_related("team").order_by("team__name")
    return JsonResponse(
        {"results": [{"id": m.team_id, "name": m.team.name, "slug": m.team.slug, "role": m.role} for m in rows]}
    )


@api_view("GET", "POST")
def team_members(request: HttpRequest, pk: int) -> HttpResponse:
    team, _ = team_for(request.user, pk, role=Role.ADMIN if request.method == "POST" else Role.VIEWER)
    if request.method == "POST":
        body = _json_object(request)
        username, role = body.get("username"), body.get("role", Role.MEMBER)
        if not isinstance(username, str) or not username:
            raise ApiError(400, "username must be a user's name", field="username")
        if role not in Role.values:
            raise ApiError(400, f"unknown role {role!r}; valid: {', '.join(Role.values)}", field="role")
        try:
            added = team_service.member_add(team=team, actor=request.user, username=username, role=role)
        except ServiceError as exc:
            raise ApiError(400, str(exc), field="username") from None
        return JsonResponse(_member_json(added), status=201)
    rows = team.memberships.select_related("user").order_by("user__username")
    return JsonResponse({"team": team.pk, "results": [_member_json(m) for m in rows]})


@api_view("POST", "DELETE")
def team_member(request: HttpRequest, pk: int, member_id: int) -> HttpResponse:
    team, mine = team_for(request.user, pk)
    membership = Membership.objects.select_related("user").filter(team=team, pk=member_id).first()
    if membership is None:
        raise ApiError(404, "not found")
    leaving = request.method == "DELETE" and membership.pk == mine.pk
    if not leaving and not mine.can(Role.ADMIN):
        raise PermissionDenied(f"your role on {team} is {mine.role}; this needs {Role.ADMIN}")
    try:
        if request.method == "DELETE":
            team_service.member_remove(membership=membership, actor=request.user)
            return HttpResponse(status=204)
        role = _json_object(request).get("role")
        if role not in Role.values:
            raise ApiError(400, f"unknown role {role!r}; valid: {', '.join(Role.values)}", field="role")
        changed = team_service.member_set_role(membership=membership, actor=request.user, role=str(role))
    except ServiceError as exc:
        raise ApiError(409, str(exc)) from None
    return JsonResponse(_member_json(changed))


def _dataset_json(d: Dataset) -> dict[str, Any]:
    return {
        "id": d.pk,
        "name": d.name,
        "task": d.reference,
        "rows": d.rows,
        "kinds": d.kinds,
        "size_bytes": d.size_bytes,
        "sha256": d.sha256,
        "description": d.description,
        "created_by": d.created_by.username if d.created_by else None,
        "created_at": d.created_at.isoformat(),
    }


@api_view("GET", "POST")
def team_datasets(request: HttpRequest, pk: int) -> HttpResponse:
    team, _ = team_for(request.user, pk, role=Role.MEMBER if request.method == "POST" else Role.VIEWER)
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            raise ApiError(400, "send the dataset as a multipart form field named file", field="file")
        try:
            dataset = dataset_service.dataset_upload(
                team=team,
                actor=request.user,
                name=str(request.POST.get("name", "")),
                upload=upload,
                filename=upload.name or "",
                description=str(request.POST.get("description", "")),
            )
        except FieldError as exc:
            raise ApiError(400, exc.message, field=exc.field) from None
        response = JsonResponse(_dataset_json(dataset), status=201)
        response["Location"] = reverse("api-team-dataset", args=[team.pk, dataset.pk])
        return response
    rows = selectors.team_datasets(team_id=team.pk)
    return JsonResponse({"team": team.pk, "results": [_dataset_json(d) for d in rows]})


@api_view("GET", "DELETE")
def team_dataset(request: HttpRequest, pk: int, dataset_id: int) -> HttpResponse:
    team, mine = team_for(request.user, pk)
    dataset = Dataset.objects.select_related("created_by").filter(team=team, pk=dataset_id).first()
    if dataset is None:
        raise ApiError(404, "not found")
    if request.method == "DELETE":
        try:
            dataset_service.dataset_delete(dataset=dataset, actor=request.user, membership=mine)
        except ServiceError as exc:
            raise PermissionDenied(str(exc)) from None
        return HttpResponse(status=204)
    if bool_param(request.GET, "rows"):
        return HttpResponse(dataset_service.dataset_jsonl(dataset), content_type="application/x-ndjson; charset=utf-8")
    return JsonResponse(_dataset_json(dataset))


@csrf_exempt  # a POST to a wrong path is a 404, not a CSRF 403 (API clients send no CSRF token)
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    # This catch-all also swallows APPEND_SLASH's redirect, so point at the slashed path instead.
    try:
        match = resolve(request.path + "/") if not request.path.endswith("/") else None
    except Resolver404:
        match = None
    if match is not None and match.func is not not_found:
        return error_response(404, f"no API endpoint at {request.path}; did you mean {request.path}/ ?")
    return error_response(404, f"no API endpoint at {request.path}; see docs/api.md")


urlpatterns = [
    path("projects/", projects, name="api-projects"),
    path("projects/<int:project_id>/runs/", project_runs, name="api-project-runs"),
    path("runs/<int:pk>/", run_detail, name="api-run"),
    path("runs/<int:pk>/cancel/", run_cancel_view, name="api-run-cancel"),
    path("runs/<int:pk>/metrics/", run_metrics, name="api-run-metrics"),
    path("runs/<int:pk>/samples/", run_samples, name="api-run-samples"),
    path("runs/<int:pk>/logs/", run_log_lines, name="api-run-logs"),
    path("runs/<int:pk>/evaluations/", run_evaluations, name="api-run-evaluations"),
    path("teams/", teams, name="api-teams"),
    path("teams/<int:pk>/members/", team_members, name="api-team-members"),
    path("teams/<int:pk>/members/<int:member_id>/", team_member, name="api-team-member"),
    path("teams/<int:pk>/datasets/", team_datasets, name="api-team-datasets"),
    path("teams/<int:pk>/datasets/<int:dataset_id>/", team_dataset, name="api-team-dataset"),
    re_path(r"^(?P<rest>.*)$", not_found),
]
