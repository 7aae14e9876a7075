"""``GET /healthz`` for container healthchecks, answered before host validation and the HTTPS redirect.

A healthcheck runs inside the container (``http://127.0.0.1:8000/healthz``), where neither the Host
nor the scheme is what production traffic carries, so this middleware sits first and answers that one
path itself: 200 when the database answers, 503 when it does not. Every other path goes on as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

HEALTH_PATH = "/healthz"


def health_middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path != HEALTH_PATH:
            return get_response(request)
        try:
            connection.ensure_connection()
        except DatabaseError:
            return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
        return HttpResponse("ok\n", content_type="text/plain")

    return middleware
