"""Access helpers: fetch an object for a user or 404, preloading what the views need.

Objects of teams the user is not in are indistinguishable from missing ones (404, never 403),
so ids of other teams' projects and runs leak nothing. ``role`` is the minimum role required.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from webapp.models import Membership, Project, Role, Run, Sample, Study, Team


class AuthenticatedHttpRequest(HttpRequest):
    """The request type of views behind @login_required (as in healthchecks)."""

    user: User


def membership(user: Any, project: Project) -> Membership | None:
    return Membership.objects.filter(user=user, team_id=project.team_id).first()


def project_for(user: Any, pk: int, *, role: str = Role.VIEWER) -> Project:
    return get_object_or_404(Project.objects.for_user(user, role=role).select_related("team"), pk=pk)


def run_for(user: Any, pk: int, *, role: str = Role.VIEWER) -> Run:
    return get_object_or_404(Run.objects.for_user(user, role=role).select_related("project__team", "created_by"), pk=pk)


def study_for(user: Any, pk: int, *, role: str = Role.VIEWER) -> Study:
    projects = Project.objects.for_user(user, role=role)
    return get_object_or_404(Study.objects.filter(project__in=projects).select_related("project__team"), pk=pk)


def sample_for(user: Any, pk: int, *, role: str = Role.VIEWER) -> Sample:
    runs = Run.objects.for_user(user, role=role)
    samples = Sample.objects.with_tokens().filter(run__in=runs).select_related("run__project")
    return get_object_or_404(samples, pk=pk)


def team_for(user: Any, pk: int, *, role: str = Role.VIEWER) -> tuple[Team, Membership]:
    """The team and the user's membership; 404 for outsiders (like every other object), 403 below ``role``."""
    found = Membership.objects.select_related("team").filter(user=user, team_id=pk).first()
    if found is None:
        raise Http404("no such team")
    if not found.can(role):
        raise PermissionDenied(f"your role on {found.team} is {found.role}; this needs {role}")
    return found.team, found


def can(user: Any, project: Project, role: str) -> bool:
    m = membership(user, project)
    return bool(m and m.can(role))


def require(user: Any, project: Project, role: str) -> None:
    """404 for outsiders; 403 for members whose role is too low (e.g. a viewer trying to launch)."""
    m = membership(user, project)
    if m is None:
        raise Http404("not found")
    if not m.can(role):
        raise PermissionDenied(f"your role on {project.team} is {m.role}; this needs {role}")
