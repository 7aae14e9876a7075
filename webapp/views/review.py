"""Review: Markdown comments and verdicts on runs, studies and single samples; run tags; the activity feed.

Reading needs viewer rights; writing needs member rights. Outsiders get 404 for every object
(the access helpers), viewers 403 on writes (``require``).

Other pages show the thread with ``review_context(target, user)`` and
``{% include "webapp/partials/review_thread.html" %}`` (see ``review_context``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from webapp import services
from webapp.http.access import can, project_for, require, run_for, sample_for, study_for
from webapp.http.navigation import safe_next
from webapp.models import Activity, Comment, Project, Role, Run, Sample, Study, Tag, Verdict, VerdictChoice
from webapp.sample_selectors import prompt_turns, question_text
from webapp.views.side_by_side import Card, heat_pieces, side_by_side_url

Target = Run | Study | Sample
KINDS: dict[str, Callable[..., Target]] = {"run": run_for, "study": study_for, "sample": sample_for}
MAX_COMMENT_CHARS = 20_000
ACTIVITY_PAGE_SIZE = 50


# --- targets --------------------------------------------------------------------------------------


def target_for(user: Any, kind: str, pk: int) -> Target:
    """The run, study or sample ``pk`` if the user can see it (404 otherwise, also for an unknown kind)."""
    getter = KINDS.get(kind)
    if getter is None:
        raise Http404("unknown review target")
    return getter(user, pk)


def target_kind(target: Target) -> str:
    return "run" if isinstance(target, Run) else "study" if isinstance(target, Study) else "sample"


def target_project(target: Target) -> Project:
    return target.run.project if isinstance(target, Sample) else target.project


def target_url(target: Target) -> str:
    if isinstance(target, Sample):
        return reverse("webapp-sample-review", args=[target.pk])
    return target.get_absolute_url()


def _back(request: HttpRequest, target: Target, anchor: str = "#review") -> HttpResponse:
    """Redirect to the page the form was on (a safe local ``next``), else to the target's page."""
    if nxt := safe_next(request):
        return redirect(nxt if "#" in nxt else nxt + anchor)
    return redirect(target_url(target) + anchor)


# --- the review box (thread + verdicts), reusable by other pages ----------------------------------


@dataclass
class ReviewBox:
    """Everything ``partials/review_thread.html`` shows for one target."""

    kind: str
    target: Target
    comments: list[Comment]
    verdicts: list[Verdict]  # history, newest first
    latest: list[Verdict]  # the latest verdict of each reviewer, newest first
    can_write: bool
    my_verdict: str = ""
    next_url: str = ""
    summary: list[tuple[str, str, int]] = field(default_factory=list)  # (choice, label, count)
    tags: list[Tag] = field(default_factory=list)  # runs only
    tag_suggestions: list[Tag] = field(default_factory=list)  # the project's other tags (runs only)

    @property
    def comment_url(self) -> str:
        return reverse("webapp-comment-create", args=[self.kind, self.target.pk])

    @property
    def verdict_url(self) -> str:
        return reverse("webapp-verdict-set", args=[self.kind, self.target.pk])

    @property
    def summary_text(self) -> str:
        """ "2 approve, 1 needs work" (or "" when nobody has given a verdict)."""
        return ", ".join(f"{n} {label.lower()}" for _, label, n in self.summary)

    @property
    def choices(self) -> list[tuple[str, str]]:
        return list(VerdictChoice.choices)


def latest_verdicts(verdicts: list[Verdict]) -> list[Verdict]:
    """The newest verdict of each author, from a newest-first list."""
    seen: set[int | None] = set()
    latest = []
    for v in verdicts:
        if v.author_id not in seen:
            seen.add(v.author_id)
            latest.append(v)
    return latest


def verdict_summary(latest: list[Verdict]) -> list[tuple[str, str, int]]:
    counts = Counter(v.verdict for v in latest)
    return [(value, label, counts[value]) for value, label in VerdictChoice.choices if counts[value]]


def review_context(target: Target, user: Any, *, next_url: str = "") -> dict[str, Any]:
    """Context for ``{% include "webapp/partials/review_thread.html" %}``: ``{"review": ReviewBox}``.

    Three queries (comments, verdicts, membership), two more for a run's tags. ``next_url`` is
    where the forms return to (default: the target's own page).
    """
    kind = target_kind(target)
    filters = {kind: target}
    comments = list(Comment.objects.filter(**filters).select_related("author").order_by("created_at", "id"))
    verdicts = list(Verdict.objects.filter(**filters).select_related("author").order_by("-created_at", "-id"))
    latest = latest_verdicts(verdicts)
    mine = next((v.verdict for v in latest if v.author_id == getattr(user, "pk", None)), "")
    box = ReviewBox(
        kind=kind,
        target=target,
        comments=comments,
        verdicts=verdicts,
        latest=latest,
        can_write=can(user, target_project(target), Role.MEMBER),
        my_verdict=mine,
        next_url=next_url or target_url(target),
        summary=verdict_summary(latest),
    )
    if isinstance(target, Run):
        box.tags = list(target.tags.all())
        box.tag_suggestions = list(
            Tag.objects.filter(project_id=target.project_id).exclude(pk__in=[t.pk for t in box.tags])
        )
    return {"review": box}


# --- writes ---------------------------------------------------------------------------------------


def _writable_target(request: HttpRequest, kind: str, pk: int) -> Target:
    target = target_for(request.user, kind, pk)
    require(request.user, target_project(target), Role.MEMBER)
    return target


@login_required
@require_POST
def comment_create(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    target = _writable_target(request, kind, pk)
    body = request.POST.get("body", "")
    if len(body) > MAX_COMMENT_CHARS:
        messages.error(request, f"A comment can be at most {MAX_COMMENT_CHARS:,} characters.")
        return _back(request, target)
    try:
        comment = services.comment_create(target=target, author=request.user, body=body)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return _back(request, target)
    return _back(request, target, anchor=f"#comment-{comment.pk}")


@login_required
@require_POST
def verdict_set(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    target = _writable_target(request, kind, pk)
    verdict = request.POST.get("verdict", "")
    if verdict not in VerdictChoice.values:
        return HttpResponseBadRequest("verdict must be one of: " + ", ".join(VerdictChoice.values))
    note = request.POST.get("note", "")
    services.verdict_set(target=target, author=request.user, verdict=verdict, note=note)
    return _back(request, target)


@login_required
@require_POST
def run_tags(request: HttpRequest, pk: int) -> HttpResponse:
    """Add (``action=add``) or remove (``action=remove``) one tag ``name`` on a run."""
    run = run_for(request.user, pk)
    require(request.user, run.project, Role.MEMBER)
    name = " ".join(request.POST.get("name", "").split())
    action = request.POST.get("action", "add")
    if action not in ("add", "remove"):
        return HttpResponseBadRequest("action must be add or remove")
    if not name or len(name) > 50:
        messages.error(request, "A tag needs a name of 1 to 50 characters.")
    elif action == "add":
        services.run_tag_add(run=run, name=name, user=request.user)
    else:
        services.run_tag_remove(run=run, name=name, user=request.user)
    return _back(request, run, anchor="#tags")


# --- pages ----------------------------------------------------------------------------------------


@login_required
def sample_review(request: HttpRequest, pk: int) -> HttpResponse:
    """One sample on its own page: the response (with heatmap) and its review thread."""
    sample = sample_for(request.user, pk)
    review = review_context(sample, request.user)
    sample.n_comments = len(review["review"].comments)  # type: ignore[attr-defined]
    sample.my_verdict = review["review"].my_verdict  # type: ignore[attr-defined]
    context = {
        "sample": sample,
        "run": sample.run,
        "project": sample.run.project,
        "nav": "runs",
        "card": Card(sample, heat_pieces(sample), prompt_turns(sample.prompt)),
        "question": question_text(sample.prompt),
        "self_url": request.path,
        "side_by_side_url": side_by_side_url(sample.run, step=sample.step, q=sample.question_id),
        "can_write": review["review"].can_write,
        **review,
    }
    return render(request, "webapp/review_sample.html", context)


@login_required
def activity(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_for(request.user, project_id)
    # The project's own events and its team's (members, roles, invitations).
    items = (
        Activity.objects.filter(Q(project=project) | Q(team_id=project.team_id, project__isnull=True))
        .select_related("actor")
        .order_by("-created_at", "-id")
    )
    page = Paginator(items, ACTIVITY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "webapp/activity.html", {"project": project, "nav": "activity", "page": page})


urlpatterns = [
    path("review/<str:kind>/<int:pk>/comments/", comment_create, name="webapp-comment-create"),
    path("review/<str:kind>/<int:pk>/verdict/", verdict_set, name="webapp-verdict-set"),
    path("runs/<int:pk>/tags/", run_tags, name="webapp-run-tags"),
    path("samples/<int:pk>/", sample_review, name="webapp-sample-review"),
    path("projects/<int:project_id>/activity/", activity, name="webapp-activity"),
]
