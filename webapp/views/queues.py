"""Queue control: a pool's queue page (running and queued runs, positions, estimated starts),
changing a queued run's priority and moving it within its priority.

Pools are shared by every team: the page lists all of a pool's runs so positions are true, but
shows and links only the runs of the user's own teams; a change needs the member role on the
run's project, and a move never jumps over a run the user could not move themselves.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from trainer.choices import PRIORITIES
from webapp import selectors
from webapp.http.access import AuthenticatedHttpRequest, can, require, run_for
from webapp.http.navigation import redirect_back
from webapp.models import Membership, Role, Run
from webapp.services import ServiceError, run_queue_move, run_set_priority
from webapp.views.runs import human_duration, starts_in_text


@login_required
@require_GET
def queues(request: HttpRequest) -> HttpResponse:
    return redirect("webapp-queue", pool=settings.CELERY_TASK_DEFAULT_QUEUE)


@login_required
@require_GET
def queue_detail(request: AuthenticatedHttpRequest, pool: str) -> HttpResponse:
    if pool not in settings.PSL_QUEUES:
        raise Http404("no such pool")
    running, entries = selectors.queue_entries(pool)
    roles = dict(Membership.objects.filter(user=request.user).values_list("team_id", "role"))
    writable = {team for team, role in roles.items() if role in (Role.MEMBER, Role.ADMIN)}
    rows = [
        {
            "entry": entry,
            "visible": entry.run.project.team_id in roles,
            "writable": entry.run.project.team_id in writable,
            "starts_in": starts_in_text(entry.starts_in),
        }
        for entry in entries
    ]
    return render(
        request,
        "webapp/queue.html",
        {
            "pool": pool,
            "pools": settings.PSL_QUEUES,
            "running": [(run, run.project.team_id in roles, human_duration(run.time_left())) for run in running],
            "rows": rows,
            "priorities": PRIORITIES,
            "step_seconds": selectors.pool_step_seconds(pool).get(""),
            "workers": selectors.pool_workers(pool),
            "nav": "queues",
        },
    )


@login_required
@require_POST
def run_priority_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    require(request.user, run.project, Role.MEMBER)
    try:
        run = run_set_priority(run=run, user=request.user, priority=request.POST.get("priority", ""))
        messages.success(request, f"Priority set to {run.priority_name}.")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect_back(request, run.get_absolute_url())


@login_required
@require_POST
def run_move_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = run_for(request.user, pk)
    require(request.user, run.project, Role.MEMBER)

    def may_pass(other: Run) -> bool:
        return bool(request.user.is_superuser) or can(request.user, other.project, Role.MEMBER)

    try:
        run_queue_move(run=run, user=request.user, direction=request.POST.get("direction", ""), may_pass=may_pass)
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect_back(request, run.get_absolute_url())


urlpatterns = [
    path("queues/", queues, name="webapp-queues"),
    path("queues/<str:pool>/", queue_detail, name="webapp-queue"),
    path("runs/<int:pk>/priority/", run_priority_view, name="webapp-run-priority"),
    path("runs/<int:pk>/move/", run_move_view, name="webapp-run-move"),
]
