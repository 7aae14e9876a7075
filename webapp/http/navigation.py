"""The project the top navigation links to, on every page.

Pages outside a project (Workers, Queues, API tokens) used to shrink the navigation to its global
links. ``remember_project`` (middleware) keeps the id of the project last visited in a cookie;
``nav_project`` (context processor) offers that project, or the user's first, to ``base.html``,
which uses it when the page has no ``project`` of its own. Membership is checked on every read,
so a stale cookie never links to a project the user cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from webapp.models import Project

COOKIE = "psl_project"
COOKIE_AGE = 180 * 24 * 3600


def remember_project(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        match = request.resolver_match
        visited = match.kwargs.get("project_id") if match else None
        if isinstance(visited, int) and response.status_code == 200 and request.COOKIES.get(COOKIE) != str(visited):
            secure = request.is_secure()
            response.set_cookie(COOKIE, str(visited), max_age=COOKIE_AGE, httponly=True, samesite="Lax", secure=secure)
        return response

    return middleware


def nav_project(request: HttpRequest) -> dict[str, Any]:
    if not request.user.is_authenticated:
        return {}

    def find() -> Project | None:
        mine = Project.objects.for_user(request.user).select_related("team")
        remembered = request.COOKIES.get(COOKIE, "")
        found = mine.filter(pk=int(remembered)).first() if remembered.isdigit() else None
        return found or mine.order_by("id").first()

    return {"nav_project": SimpleLazyObject(find)}
