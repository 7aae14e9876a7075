"""The runs list: filters, sorting by config and metrics, columns, selection, constant query count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from trainer.choices import PRIORITIES
from webapp.models import Run, Tag

pytestmark = pytest.mark.django_db


def list_url(project: Any, query: str = "") -> str:
    return reverse("webapp-run-list", args=[project.pk]) + (f"?{query}" if query else "")


def names(response: Any) -> list[str]:
    return [run.name for run, _ in response.context["rows"]]


def test_it_lists_the_projects_runs_newest_first(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    make_run(name="old")
    make_run(name="new")
    response = client_for(alice).get(list_url(project))
    assert response.status_code == 200
    assert names(response) == ["new", "old"]
    assert b"New run" in response.content


def test_it_shows_an_empty_state_without_runs(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    response = client_for(alice).get(list_url(project))
    assert b"No runs yet" in response.content


def test_it_filters_by_status_algorithm_and_name(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    make_run(name="ps running", status="running")
    make_run(name="grpo running", status="running", algorithm="grpo")
    make_run(name="ps done", status="succeeded")
    client = client_for(alice)
    assert names(client.get(list_url(project, "status=running&algorithm=policy_split"))) == ["ps running"]
    assert names(client.get(list_url(project, "q=GRPO"))) == ["grpo running"]


def test_it_filters_by_tag(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    tagged = make_run(name="tagged")
    make_run(name="plain")
    tagged.tags.add(Tag.objects.create(project=project, name="baseline"))
    response = client_for(alice).get(list_url(project, "tag=baseline"))
    assert names(response) == ["tagged"]
    assert b'<span class="tag">baseline</span>' in response.content


def test_it_filters_by_any_config_field(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    make_run(name="low", eta=0.03)
    make_run(name="high", eta=0.1, rollout_sharing=False)
    client = client_for(alice)
    assert names(client.get(list_url(project, "cfg.eta=0.03"))) == ["low"]
    assert names(client.get(list_url(project, "where=rollout_sharing%3Dfalse"))) == ["high"]
    assert sorted(names(client.get(list_url(project, "cfg.eta=0.03,0.1")))) == ["high", "low"]


def test_it_reports_a_bad_config_filter(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    make_run()
    response = client_for(alice).get(list_url(project, "cfg.nope=1"))
    assert response.status_code == 200
    assert "“nope” is not a config field" in response.content.decode()


def with_summary(run: Run, **summary: float) -> Run:
    run.summary = {k.replace("__", "/"): v for k, v in summary.items()}
    run.save(update_fields=["summary"])
    return run


def test_it_sorts_by_a_metrics_last_value_numerically_with_nulls_last(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    with_summary(make_run(name="nine"), he__accuracy=9.0)
    with_summary(make_run(name="ten"), he__accuracy=10.0)
    make_run(name="none")
    with_summary(make_run(name="half"), he__accuracy=0.5)
    client = client_for(alice)
    assert names(client.get(list_url(project, "sort=m.he/accuracy"))) == ["half", "nine", "ten", "none"]
    assert names(client.get(list_url(project, "sort=-m.he/accuracy"))) == ["ten", "nine", "half", "none"]


def test_it_sorts_by_a_config_field(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    make_run(name="b", eta=0.1)
    make_run(name="a", eta=0.03)
    make_run(name="c", eta=1.0)
    assert names(client_for(alice).get(list_url(project, "sort=-cfg.eta"))) == ["c", "b", "a"]


def prioritised(run: Run, name: str) -> Run:
    Run.objects.filter(pk=run.pk).update(priority=PRIORITIES.index(name))
    return run


def test_it_badges_a_runs_non_default_priority_next_to_its_status(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    prioritised(make_run(name="urgent"), "high")
    prioritised(make_run(name="whenever"), "low")
    make_run(name="ordinary")
    body = client_for(alice).get(list_url(project)).content.decode()
    assert '<span class="badge priority-high" title="queue priority">high</span>' in body
    assert '<span class="badge priority-low" title="queue priority">low</span>' in body
    assert "priority-normal" not in body  # the default says nothing


def test_it_shows_and_sorts_by_a_priority_column_in_serving_order(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    prioritised(make_run(name="low"), "low")
    make_run(name="normal")
    prioritised(make_run(name="high"), "high")
    client = client_for(alice)
    response = client.get(list_url(project, "cols=status,priority&sort=priority"))
    assert names(response) == ["high", "normal", "low"]  # first click: the order a pool serves them in
    assert [cells[2][1] for _, cells in response.context["rows"]] == ["high", "normal", "low"]
    body = response.content.decode()
    assert '<span class="badge priority-normal">normal</span>' in body
    assert 'title="queue priority"' not in body  # the column says it; no badge twice
    assert names(client.get(list_url(project, "cols=priority&sort=-priority"))) == ["low", "normal", "high"]


def test_it_shows_the_default_columns(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    with_summary(make_run(name="r"), normal__accuracy=0.25, split__he_normal_kl=0.0123456)
    response = client_for(alice).get(list_url(project))
    labels = [h["column"].label for h in response.context["headers"]]
    assert labels == [
        "Name",
        "Status",
        "Algorithm",
        "Model",
        "η",
        "Seed",
        "Created",
        "normal/accuracy",
        "he/accuracy",
        "split/he_normal_kl",
    ]
    body = response.content.decode()
    assert "0.01235" in body and "Policy Split" in body


def test_it_shows_the_columns_the_user_chose(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    with_summary(make_run(name="r", kappa=3.0), train__reward=0.75)
    response = client_for(alice).get(list_url(project, "cols=cfg.kappa,m.train/reward"))
    assert [h["column"].id for h in response.context["headers"]] == ["name", "cfg.kappa", "m.train/reward"]
    assert response.context["rows"][0][1][1:] == [
        (response.context["headers"][1]["column"], "3"),
        (response.context["headers"][2]["column"], "0.75"),
    ]


def test_it_paginates(client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]) -> None:
    for i in range(53):
        make_run(name=f"r{i}")
    client = client_for(alice)
    assert len(client.get(list_url(project)).context["rows"]) == 50
    assert len(client.get(list_url(project, "page=2")).context["rows"]) == 3


def test_it_escapes_run_names(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    make_run(name="<script>alert(1)</script>")
    body = client_for(alice).get(list_url(project)).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


@pytest.mark.parametrize("count", [3, 30])
def test_it_uses_a_constant_number_of_queries(
    count: int,
    client_for: Callable[..., Any],
    alice: Any,
    project: Any,
    make_run: Callable[..., Any],
    django_assert_num_queries: Any,
) -> None:
    tags = [Tag.objects.create(project=project, name=f"t{i}") for i in range(3)]
    for i in range(count):
        with_summary(make_run(name=f"r{i}"), normal__accuracy=i / 10).tags.add(*tags[: i % 4])
    client = client_for(alice)
    # session, user, project, count, page of runs, their tags, the tag filter's list, the role check
    with django_assert_num_queries(8):
        response = client.get(list_url(project, "sort=-m.normal/accuracy&cols=status,cfg.eta,m.he/accuracy"))
    assert len(response.context["rows"]) == count


def test_it_redirects_compare_to_the_compare_page(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    a, b = make_run(), make_run()
    url = reverse("webapp-run-compare-selected", args=[project.pk]) + f"?run={a.pk}&run={b.pk}"
    response = client_for(alice).get(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("webapp-compare", args=[project.pk]) + f"?runs={a.pk},{b.pk}"


def test_it_cancels_the_selected_active_runs(
    client_for: Callable[..., Any], bob: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    queued, running, done = make_run(), make_run(status="running"), make_run(status="succeeded")
    url = reverse("webapp-run-bulk-cancel", args=[project.pk])
    response = client_for(bob).post(url, {"run": [queued.pk, running.pk, done.pk]})
    assert response.status_code == 302
    queued.refresh_from_db()
    running.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == "cancelled"
    assert running.status == "running" and running.cancel_requested
    assert done.status == "succeeded"


def test_it_never_cancels_runs_of_another_project(
    client_for: Callable[..., Any], alice: Any, project: Any, other_project: Any, make_run: Callable[..., Any]
) -> None:
    theirs = make_run(project=other_project)
    client_for(alice).post(reverse("webapp-run-bulk-cancel", args=[project.pk]), {"run": [theirs.pk]})
    theirs.refresh_from_db()
    assert theirs.status == "queued"
