"""JSON errors for every status under ``/api/`` (docs/api.md), whoever produced them.

``api_view`` answers the errors a view knows about. Django itself answers others before or after
the view: a bad ``Host`` (400), an exception in a middleware or a view (500, through
``handler500``). The middleware below turns any non-JSON error under ``/api/`` into the API's
``{"error": …}`` body, keeping the status and the headers a client acts on; ``server_error``
answers 503 with ``Retry-After`` while the database is unreachable (pages too), else 500.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views import defaults

from webapp.http.api_auth import error_response

API_PREFIX = "/api/"
RETRY_AFTER_SECONDS = 10
# What a client needs to act on an error; kept when the body is replaced.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


Handler = Callable[[HttpRequest], HttpResponseBase]


def api_json_errors(get_response: Handler) -> Handler:
    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        json_response = error_response(response.status_code, (response.reason_phrase or "error").lower())
        for header in KEPT_HEADERS:
            if header in response:
                json_response[header] = response[header]
        return json_response

    return middleware


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: Django calls it while handling the exception, so ``sys.exc_info`` names it."""
    database_down = isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE)
    if database_down:
        message = "the database is unavailable; retry in a few seconds"
        if request.path.startswith(API_PREFIX):
            response: HttpResponse = error_response(503, message)
        else:
            response = HttpResponse(message + "\n", status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if request.path.startswith(API_PREFIX):
        return error_response(500, "internal server error (logged on the server)")
    return defaults.server_error(request)
