"""The page frame: the top navigation keeps its project on global pages, the favicon, help texts."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from webapp.models import Project

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("page", ["webapp-workers", "webapp-tokens", "webapp-queues"])
def test_the_navigation_keeps_the_project_links_on_global_pages(
    client_for: Any, alice: Any, project: Any, page: str
) -> None:
    body = client_for(alice).get(reverse(page), follow=True).content.decode()
    assert f'href="{reverse("webapp-run-list", args=[project.pk])}"' in body
    assert f'href="{reverse("webapp-study-list", args=[project.pk])}"' in body
    assert "Lab / <strong>Entropy</strong>" in body


def test_the_navigation_follows_the_project_last_visited(client_for: Any, alice: Any, project: Any, team: Any) -> None:
    second = Project.objects.create(team=team, name="Second", slug="second")
    client = client_for(alice)
    client.get(reverse("webapp-run-list", args=[second.pk]))
    body = client.get(reverse("webapp-workers")).content.decode()
    assert f'href="{reverse("webapp-run-list", args=[second.pk])}"' in body
    assert f'href="{reverse("webapp-run-list", args=[project.pk])}"' not in body


def test_the_navigation_never_links_to_a_project_the_user_cannot_see(
    client_for: Any, eve: Any, alice: Any, project: Any, other_project: Any
) -> None:
    client = client_for(eve)
    client.cookies["psl_project"] = str(project.pk)  # e.g. left over from another login on this browser
    body = client.get(reverse("webapp-workers")).content.decode()
    assert f'href="{reverse("webapp-run-list", args=[other_project.pk])}"' in body
    assert f'href="{reverse("webapp-run-list", args=[project.pk])}"' not in body


def test_every_page_has_a_favicon(client_for: Any, alice: Any, client: Any) -> None:
    body = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in body
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/img/favicon.svg"


def test_the_run_form_says_where_a_launch_lands(client_for: Any, alice: Any, project: Any) -> None:
    body = client_for(alice).get(reverse("webapp-run-create", args=[project.pk])).content.decode()
    assert "You land on the new run; several seeds launch one run each and you land on the runs list." in body
