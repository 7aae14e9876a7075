"""GET /healthz: what the container healthchecks call from inside the container."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client, override_settings

PRODUCTION_LIKE = {"ALLOWED_HOSTS": ["lab.example.com"], "SECURE_SSL_REDIRECT": True}


@pytest.mark.django_db
def test_it_answers_over_plain_http_on_localhost_in_production_settings() -> None:
    with override_settings(**PRODUCTION_LIKE):
        response = Client().get("/healthz", HTTP_HOST="127.0.0.1:8000")
        assert (response.status_code, response.content) == (200, b"ok\n")
        assert Client().get("/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400  # only that path is exempt


@pytest.mark.django_db
def test_it_is_unhealthy_while_the_database_is_down() -> None:
    with mock.patch("webapp.http.health.connection.ensure_connection", side_effect=OperationalError("down")):
        response = Client().get("/healthz")
    assert response.status_code == 503


def test_it_needs_no_login_or_session() -> None:
    with mock.patch("webapp.http.health.connection.ensure_connection"):
        response = Client().get("/healthz")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
