"""Every URL of the app, taken from the URL conf, asked by Eve (admin of Rivals) about Lab's objects: 404.

The list of URLs is generated, so a new view is in the matrix the day it is added: its parameters must be
known below (KIND_OF_PARAMETER / KIND_OF_PK), or its URL must be listed in NO_TEAM_OBJECT with the reason
it names no team's object. Each URL is asked with GET and POST (and DELETE for the API); a method the
view does not take may answer 405, but at least one method must reach the lookup and answer 404, and
nothing of Lab's may change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from webapp.models import (
    Activity,
    ApiToken,
    Checkpoint,
    Comment,
    Dataset,
    Evaluation,
    Invitation,
    Membership,
    Run,
    Sample,
    Study,
    Verdict,
)

pytestmark = pytest.mark.django_db

# URLs that name no object of a team (the user's own pages, shared infrastructure) and why.
NO_TEAM_OBJECT = {
    "login/": "signing in",
    "logout/": "signing out",
    "account/password/": "the user's own password",
    "account/password/done/": "the user's own password",
    "": "the user's own projects",
    "favicon.ico": "an icon",
    "projects/new/": "creates a project in one of the user's own teams (the form offers only those)",
    "tokens/": "the user's own tokens",
    "workers/": "workers are shared infrastructure; only runs of the user's teams are linked",
    "teams/": "the user's own teams",
    "invitations/<str:token>/": "a bearer link: whoever holds the secret may join (tested in test_teams)",
    "samples/tokens/": "ids in the query string, filtered to the user's runs (test_side_by_side)",
    "queues/": "pools are shared; other teams' runs are not shown",
    "queues/<str:pool>/": "pools are shared; other teams' runs are not shown",
    "api/projects/": "the user's own projects",
    "api/teams/": "the user's own teams",
    "api/^(?P<rest>.*)$": "the API's 404 for unknown paths",
}

# What an id parameter names, by its name; ``pk`` depends on the URL's first segment.
KIND_OF_PARAMETER = {
    "project_id": "project",
    "run_id": "run",
    "member_id": "membership",
    "invitation_id": "invitation",
    "eval_pk": "evaluation",
    "dataset_id": "dataset",
}
KIND_OF_PK = {
    "runs": "run",
    "studies": "study",
    "samples": "sample",
    "teams": "team",
    "tokens": "token",
}
REVIEW_KINDS = ("run", "study", "sample")


def routes(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            if str(p.pattern) != "admin/":  # Django admin: staff only, checked by Django itself
                yield from routes(p.url_patterns, prefix + str(p.pattern))
        else:
            yield prefix + str(p.pattern), p


@pytest.fixture
def lab(make_run: Any, project: Any, team: Any, alice: Any, bob: Any) -> dict[str, Any]:
    run = make_run(status="succeeded", steps=2)
    study = Study.objects.create(project=project, name="lab study", created_by=alice)
    run.study = study
    run.save(update_fields=["study"])
    Checkpoint.objects.create(run=run, step=2, path="/nowhere")
    sample = Sample.objects.create(
        run=run,
        step=1,
        question_id="q",
        mode="he",
        context="he",
        index=0,
        prompt="p",
        response="r",
        length=1,
        reward=0.0,
    )
    evaluation = Evaluation.objects.create(run=run, step=2, benchmark="arith", mode="he", status="succeeded")
    invitation, _ = Invitation.issue(team=team, email="x@lab.org", role="member", user=alice)
    token, _ = ApiToken.issue(user=bob, name="bob's")
    dataset = Dataset.objects.create(
        team=team, name="lab-questions", content=b"", sha256="0" * 64, rows=1, size_bytes=0, created_by=alice
    )
    return {
        "dataset": dataset,
        "project": project,
        "run": run,
        "study": study,
        "sample": sample,
        "evaluation": evaluation,
        "team": team,
        "membership": Membership.objects.get(team=team, user=bob),
        "invitation": invitation,
        "token": token,
    }


def fill(route: str, lab: dict[str, Any]) -> list[str]:
    """The URLs of ``route`` with Lab's ids in every parameter (one per review kind for review/<kind>/)."""
    parts = route.split("/")
    kinds = REVIEW_KINDS if "<str:kind>" in parts else ("",)
    urls = []
    for review_kind in kinds:
        filled = []
        for part in parts:
            if not part.startswith("<"):
                filled.append(part)
                continue
            _, name = part[1:-1].split(":")
            if name == "kind":
                filled.append(review_kind)
                continue
            first = parts[1] if parts[0] == "api" else parts[0]
            kind = KIND_OF_PARAMETER.get(name) or (review_kind or KIND_OF_PK.get(first) if name == "pk" else None)
            assert kind, f"{route}: what does <{part[1:-1]}> name? add it to KIND_OF_PARAMETER or KIND_OF_PK"
            filled.append(str(lab[kind].pk))
        urls.append("/" + "/".join(filled))
    return urls


def snapshot() -> dict[str, Any]:
    return {
        "runs": list(
            Run.objects.order_by("pk").values_list("pk", "status", "cancel_requested", "priority", "study_id")
        ),
        "studies": list(Study.objects.values_list("pk", "name", "baseline_id")),
        "members": sorted(Membership.objects.values_list("team_id", "user_id", "role")),
        "invitations": Invitation.objects.count(),
        "tokens": ApiToken.objects.count(),
        "comments": Comment.objects.count(),
        "verdicts": Verdict.objects.count(),
        "activity": Activity.objects.count(),
        "evaluations": Evaluation.objects.count(),
        "datasets": Dataset.objects.count(),
    }


def test_every_url_is_in_the_matrix_or_named_as_no_teams_object() -> None:
    for route, _ in routes():
        has_ids = "<int:" in route or "<str:kind>" in route
        assert has_ids or route in NO_TEAM_OBJECT, f"{route}: add it to NO_TEAM_OBJECT with a reason"
        assert not (has_ids and route in NO_TEAM_OBJECT and "<int:" in route), route


def test_another_team_gets_404_for_every_url_naming_labs_objects(eve: Any, lab: dict[str, Any]) -> None:
    browser = Client()
    browser.force_login(eve)
    raw = ApiToken.issue(user=eve, name="eve's")[1]
    api = Client(headers={"Authorization": f"Bearer {raw}"})
    before = snapshot()
    asked = 0
    for route, _ in routes():
        if route in NO_TEAM_OBJECT:
            continue
        client = api if route.startswith("api/") else browser
        methods = ("get", "post", "delete") if route.startswith("api/") else ("get", "post")
        for url in fill(route, lab):
            answers = {}
            for method in methods:
                body = json.dumps({"role": "admin", "username": "eve", "algorithm": "grpo"})
                sent = client.generic(method.upper(), url, body if method != "get" else "", "application/json")
                answers[method] = sent.status_code
            asked += 1
            assert set(answers.values()) <= {404, 405}, f"{url}: {answers}"
            assert 404 in answers.values(), f"{url}: no method reached the lookup: {answers}"
    assert asked >= 40
    assert snapshot() == before  # nothing of Lab's changed
