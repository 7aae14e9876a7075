"""Security headers Django's SecurityMiddleware does not send: Content-Security-Policy, Permissions-Policy,
Cross-Origin-Resource-Policy (and X-Frame-Options on static files too).

Both come from settings (``CONTENT_SECURITY_POLICY``, ``PERMISSIONS_POLICY``); a view that sets its own
keeps it. The other headers (HSTS, nosniff, Referrer-Policy, Cross-Origin-Opener-Policy, X-Frame-Options)
are Django's, configured in settings.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def security_headers(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if settings.CONTENT_SECURITY_POLICY:
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        if settings.PERMISSIONS_POLICY:
            response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        # Static files are answered by WhiteNoise before XFrameOptionsMiddleware sees them.
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response

    return middleware
