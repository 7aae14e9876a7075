"""Signing in (throttled by django-axes: the lockout page and the client address it counts by) and
the password change page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse_lazy


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed sign-ins for this account or from this address: signing in is locked for "
        f"{minutes} minutes after the last failed attempt. Try again later, or ask an admin to unlock it."
    )


def locked_out(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' lockout response: the sign-in page with the reason and the lock-out time (429)."""
    form = AuthenticationForm(request)
    context = {"form": form, "lockout": lockout_message(), "next": request.POST.get("next", "")}
    return render(request, "webapp/login.html", context, status=429)


def client_address(request: HttpRequest) -> str:
    """The address sign-ins are counted by: the peer, or behind our HTTPS proxy (BEHIND_HTTPS_PROXY) the
    address that proxy appended last to X-Forwarded-For (the entries before it are the client's to forge)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded:
        return forwarded.split(",")[-1].strip()
    return str(request.META.get("REMOTE_ADDR", ""))


class PasswordChange(auth_views.PasswordChangeView):
    """The old password, then the new one twice, checked by every AUTH_PASSWORD_VALIDATORS rule; the
    user's other sessions end (their session hash no longer matches), this one stays signed in."""

    template_name = "webapp/password_change.html"
    success_url = reverse_lazy("webapp-password-changed")

    def form_valid(self, form: Any) -> HttpResponse:
        from webapp.teams import record_password_change

        response = super().form_valid(form)
        record_password_change(user=self.request.user)
        return response


urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="webapp/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", PasswordChange.as_view(), name="webapp-password-change"),
    path(
        "account/password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="webapp/password_change_done.html"),
        name="webapp-password-changed",
    ),
]
