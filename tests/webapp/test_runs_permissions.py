"""Who may do what on the runs pages: members act, viewers read, outsiders see nothing (404)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from tests.webapp.test_forms import form_data
from webapp.models import Run

pytestmark = pytest.mark.django_db

# (url name, uses the project id, method, needs member role)
ENDPOINTS = [
    ("webapp-run-list", True, "get", False),
    ("webapp-run-compare-selected", True, "get", False),
    ("webapp-run-create", True, "get", True),
    ("webapp-run-create", True, "post", True),
    ("webapp-grid-create", True, "get", True),
    ("webapp-grid-create", True, "post", True),
    ("webapp-run-bulk-cancel", True, "post", True),
    ("webapp-run-detail", False, "get", False),
    ("webapp-run-status", False, "get", False),
    ("webapp-run-series", False, "get", False),
    ("webapp-run-logs", False, "get", False),
    ("webapp-run-cancel", False, "post", True),
    ("webapp-run-resume", False, "post", True),
    ("webapp-run-priority", False, "post", True),
    ("webapp-run-move", False, "post", True),
]


def call(client: Any, name: str, for_project: bool, method: str, run: Run) -> Any:
    target = reverse(name, args=[run.project_id if for_project else run.pk])
    if method == "get":
        return client.get(target, {"key": "normal/accuracy"} if name == "webapp-run-series" else {})
    launches = name in ("webapp-run-create", "webapp-grid-create")
    data = form_data(name="x", factors="eta = 0.1") if launches else {}
    return client.post(target, {**data, "run": [run.pk]})


@pytest.mark.parametrize(("name", "for_project", "method", "_write"), ENDPOINTS)
def test_it_hides_everything_from_other_teams(
    name: str,
    for_project: bool,
    method: str,
    _write: bool,
    client_for: Callable[..., Any],
    eve: Any,
    make_run: Callable[..., Any],
) -> None:
    run = make_run(status="failed")
    assert call(client_for(eve), name, for_project, method, run).status_code == 404
    run.refresh_from_db()
    assert run.status == "failed" and Run.objects.count() == 1


@pytest.mark.parametrize(("name", "for_project", "method", "write"), ENDPOINTS)
def test_it_lets_viewers_read_but_not_write(
    name: str,
    for_project: bool,
    method: str,
    write: bool,
    client_for: Callable[..., Any],
    vera: Any,
    make_run: Callable[..., Any],
) -> None:
    run = make_run(status="failed")
    response = call(client_for(vera), name, for_project, method, run)
    read_status = 302 if name == "webapp-run-compare-selected" else 200
    assert response.status_code == (403 if write else read_status)
    run.refresh_from_db()
    assert run.status == "failed" and Run.objects.count() == 1


@pytest.mark.parametrize("persona", ["alice", "bob"])
def test_it_lets_members_and_admins_cancel_resume_and_clone(
    persona: str, request: Any, client_for: Callable[..., Any], make_run: Callable[..., Any]
) -> None:
    client = client_for(request.getfixturevalue(persona))
    queued, failed = make_run(), make_run(status="failed")
    assert client.post(reverse("webapp-run-cancel", args=[queued.pk])).status_code == 302
    assert client.post(reverse("webapp-run-resume", args=[failed.pk])).status_code == 302
    clone = reverse("webapp-run-create", args=[queued.project_id]) + f"?clone={failed.pk}"
    assert client.get(clone).status_code == 200
    queued.refresh_from_db()
    failed.refresh_from_db()
    assert (queued.status, failed.status) == ("cancelled", "queued")


def test_it_shows_no_action_buttons_to_viewers(
    client_for: Callable[..., Any], vera: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="failed")
    body = client_for(vera).get(reverse("webapp-run-detail", args=[run.pk])).content.decode()
    assert "Resume from" not in body and "?clone=" not in body
    listing = client_for(vera).get(reverse("webapp-run-list", args=[run.project_id])).content.decode()
    assert "New run" not in listing and "Cancel selected" not in listing


def test_it_requires_login(client: Any, make_run: Callable[..., Any]) -> None:
    run = make_run()
    response = client.get(reverse("webapp-run-status", args=[run.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
