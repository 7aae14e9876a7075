"""Authentication and error handling for the JSON API.

``@api_view("GET", "POST")`` wraps a view so that:

* ``Authorization: Bearer <token>`` authenticates as the token's user (tokens are looked up by
  their SHA-256; ``last_used_at`` is written at most once a minute). Token requests are exempt
  from CSRF: a browser never sends the header on its own, so a forged request cannot carry it.
* Without the header, a logged-in session works for safe methods only (GET/HEAD), so the
  browser can read the API; writes always need a token, which is why CSRF never applies.
* Every error is JSON ``{"error": message}`` (plus ``"field"`` for a bad input field): 400,
  401, 403, 404 (also for other teams' objects), 405, 409.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from webapp.http.params import ParamError, check_query
from webapp.models import ApiToken

View = Callable[..., HttpResponse]
SAFE_METHODS = ("GET", "HEAD")
TOUCH_EVERY = timedelta(minutes=1)


class ApiError(Exception):
    """An error the client can act on: rendered as ``{"error": message, "field": field}``."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error_response(status: int, message: str, *, field: str | None = None) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = JsonResponse(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def body_limit_message() -> str:
    """The 413's message, naming the limit (Django's DATA_UPLOAD_MAX_MEMORY_SIZE; docs/api.md)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"request body too large: the limit is {limit / 2**20:g} MB ({limit} bytes)"


def token_user(request: HttpRequest) -> Any:
    """The user of the request's bearer token; None without the header. Raises ApiError(401) on a bad one."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise ApiError(401, "malformed Authorization header; expected: Bearer <token>")
    token = ApiToken.objects.select_related("user").filter(digest=ApiToken.hash(raw)).first()
    if token is None or not token.user.is_active:
        raise ApiError(401, "invalid or revoked API token")
    _touch(token)
    return token.user


def _touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        # Conditional update: concurrent requests within the minute write once.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - TOUCH_EVERY)
        ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)


def _authenticate(request: HttpRequest) -> Any:
    user = token_user(request)
    if user is not None:
        return user
    if request.method in SAFE_METHODS and request.user.is_authenticated:
        return request.user
    if request.user.is_authenticated:
        raise ApiError(401, "writes need an API token (Authorization: Bearer <token>); create one under API tokens")
    raise ApiError(401, "authentication required: send Authorization: Bearer <token>")


def api_view(*methods: str) -> Callable[[View], View]:
    """Authenticate, allow only ``methods`` (HEAD comes with GET) and turn errors into JSON."""
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorator(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in allowed:
                    message = f"method {request.method} not allowed; use {', '.join(methods)}"
                    response = error_response(405, message)
                    response["Allow"] = ", ".join(sorted(allowed))
                    return response
                check_query(request.GET)  # before anything reads a parameter (trainer.config.text_problem)
                request.user = _authenticate(request)
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.message, field=exc.field)
            except ParamError as exc:
                return error_response(400, str(exc), field=exc.field)
            except Http404:
                return error_response(404, "not found")
            except PermissionDenied as exc:
                return error_response(403, str(exc) or "permission denied")
            except RequestDataTooBig:
                return error_response(413, body_limit_message())

        return wrapped

    return decorator
