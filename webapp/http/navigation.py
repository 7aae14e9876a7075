"""Where the pages send the user: back to the page a form was posted from, and the project the top
navigation links to, on every page.

A form that acts and returns (cancel, priority, queue moves, review) posts a ``next`` field with the
page it was on; ``redirect_back`` follows it only when it is a local URL (never an open redirect).

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
from django.shortcuts import redirect
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme

from webapp.models import Project

COOKIE = "psl_project"
COOKIE_AGE = 180 * 24 * 3600


def safe_next(request: HttpRequest) -> str:
    """The POSTed ``next`` if it is a URL of this site (same host, https when the request is), else ""."""
    target = request.POST.get("next", "")
    ok = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return target if target and ok else ""


def redirect_back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Back to the page the form was posted from (a safe ``next``), else to ``fallback``."""
    return redirect(safe_next(request) or fallback)


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
