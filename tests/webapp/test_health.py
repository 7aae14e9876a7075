"""GET /healthz: what the container healthchecks call from inside the container; and what the pages
answer while the database is unreachable."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import Client, override_settings

from tests.workers import WebProcess, free_port

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


def _get(url: str, **headers: str) -> tuple[int, str, str | None, bytes]:
    """(status, Content-Type, Retry-After, body) of one GET."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.headers["Retry-After"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.headers["Retry-After"], exc.read()


def test_while_the_database_is_unreachable_pages_answer_a_plain_text_503_and_the_api_a_json_one() -> None:
    # A server of its own on a port where nothing listens: refused connections, as when PostgreSQL is
    # down, without touching the cluster the other tests (and sessions) share.
    web = WebProcess(free_port(), DATABASE_URL=f"postgres://psl:x@127.0.0.1:{free_port()}/psl")
    signed_in = {"Cookie": "sessionid=" + "s" * 32}  # a page of a signed-in user reads the session table
    try:
        health = _get(web.url + "/healthz")
        page = _get(web.url + "/", **signed_in)
        api = _get(web.url + "/api/projects/", Authorization="Bearer psl_anything")
    finally:
        web.stop()
    assert health == (503, "text/plain", None, b"database unavailable\n")
    status, ctype, retry_after, body = page
    assert (status, ctype, body) == (503, "text/plain", b"the database is unavailable; retry in a few seconds\n")
    assert retry_after is not None and int(retry_after) > 0
    status, ctype, retry_after, body = api
    assert (status, ctype) == (503, "application/json") and retry_after is not None
    assert json.loads(body) == {"error": "the database is unavailable; retry in a few seconds"}
