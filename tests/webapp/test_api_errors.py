"""Every error under /api/ is a JSON body, whoever answers it: the views, Django's own checks, an
unexpected exception (500) and an unreachable database (503 with Retry-After, on a real web server).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from tests.workers import WebProcess, free_port
from webapp.models import ApiToken


def _json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = json.loads(response.content)
    assert isinstance(body["error"], str) and body["error"]
    return body


@pytest.fixture
def api(alice: Any) -> Callable[..., Any]:
    """``api(method, path, **kwargs)``: a request with alice's token from a client that, like a real
    server, answers an exception with a response instead of raising it into the test."""
    token = ApiToken.issue(user=alice, name="t")[1]
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return getattr(client, method)(path, **kwargs)

    return call


def test_the_api_answers_every_client_error_as_json(
    api: Callable[..., Any], client: Client, project: Any, other_project: Any, vera: Any
) -> None:
    runs = f"/api/projects/{project.pk}/runs/"
    _json_error(api("post", runs, data=b"{", content_type="application/json"), 400)
    _json_error(client.get(runs), 401)
    _json_error(api("get", f"/api/projects/{other_project.pk}/runs/"), 404)
    _json_error(api("get", "/api/nowhere/"), 404)
    assert _json_error(api("delete", runs), 405) and api("delete", runs)["Allow"]
    _json_error(api("post", runs, data=b" " * (10 << 20), content_type="application/json"), 413)
    viewer = ApiToken.issue(user=vera, name="v")[1]
    _json_error(client.post(runs, data={}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {viewer}"), 403)


def test_a_post_to_no_endpoint_is_a_json_404_not_a_csrf_403(alice: Any) -> None:
    token = ApiToken.issue(user=alice, name="t")[1]
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert "no API endpoint" in _json_error(client.post("/api/nowhere/", data={}), 404)["error"]


def test_a_request_for_another_host_is_a_json_400(api: Callable[..., Any]) -> None:
    _json_error(api("get", "/api/projects/", HTTP_HOST="evil.example"), 400)  # Django's DisallowedHost


def test_an_unexpected_exception_is_a_json_500(api: Callable[..., Any], make_run: Any) -> None:
    run = make_run()
    with mock.patch("webapp.views.api.metric_series", side_effect=RuntimeError("boom")):
        body = _json_error(api("get", f"/api/runs/{run.pk}/metrics/?key=train/reward"), 500)
    assert "boom" not in body["error"]  # nothing internal leaks


def test_while_the_database_is_unreachable_every_api_call_is_a_json_503_with_retry_after() -> None:
    closed_port = free_port()  # nothing listens there: connections are refused, as when PostgreSQL is down
    web = WebProcess(free_port(), DATABASE_URL=f"postgres://psl:x@127.0.0.1:{closed_port}/psl")
    try:
        for method, path in [("GET", "/api/projects/"), ("POST", "/api/projects/1/runs/"), ("GET", "/api/runs/1/")]:
            status, ctype, body, headers = web.raw(method, path, token="psl_anything", data=b"{}")
            assert (status, ctype) == (503, "application/json"), (method, path, status, web.output())
            assert body is not None and "database" in body["error"]
            assert int(headers["Retry-After"]) > 0
    finally:
        web.stop()


@pytest.mark.django_db(transaction=True)  # the server process reads the token from the test database
def test_a_body_over_the_limit_is_a_json_413_naming_the_limit_before_the_body_is_sent(alice: Any, project: Any) -> None:
    token = ApiToken.issue(user=alice, name="t")[1]
    web = WebProcess(free_port())
    head = (
        f"POST /api/projects/{project.pk}/runs/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {10 << 20}\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", int(web.url.rsplit(":", 1)[1])), timeout=30) as sock:
            sock.sendall(head.encode() + b'{"name": "')  # the first bytes of a 10 MB body, no more
            response = http.client.HTTPResponse(sock)
            response.begin()  # a server waiting for the rest of the body would time out here
            status, ctype, body = response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        web.stop()
    assert (status, ctype) == (413, "application/json"), body[:300]
    assert json.loads(body)["error"] == "request body too large: the limit is 2.5 MB (2621440 bytes)"
