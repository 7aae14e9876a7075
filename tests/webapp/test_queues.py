"""Queue control: priorities and reorders decide which queued run of a pool starts next, every
queued run shows its position and estimated start, and only members of a run's project steer it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from trainer.config import TrainConfig
from webapp import selectors
from webapp.models import Run, Worker
from webapp.services import ServiceError, run_create, run_queue_move, run_set_priority

pytestmark = pytest.mark.django_db


def _submit(project: Any, user: Any, name: str, priority: str = "normal", steps: int = 5) -> Run:
    return run_create(
        project=project, user=user, config=TrainConfig(steps=steps), name=name, priority=priority, enqueue=False
    )


def _order(pool: str = "cpu") -> list[str]:
    return list(selectors.queued_runs(pool).values_list("name", flat=True))


def test_a_pool_serves_high_before_normal_before_low_and_otherwise_in_submission_order(
    project: Any, alice: Any
) -> None:
    for name, priority in [("a", "low"), ("b", "normal"), ("c", "high"), ("d", "normal"), ("e", "high")]:
        _submit(project, alice, name, priority)

    assert _order() == ["c", "e", "b", "d", "a"]


def test_a_queued_runs_priority_changes_its_place_and_a_started_one_keeps_its_own(
    project: Any, alice: Any, make_run: Callable[..., Any]
) -> None:
    first, second = _submit(project, alice, "first"), _submit(project, alice, "second")

    run_set_priority(run=second, user=alice, priority="high")

    assert _order() == ["second", "first"]
    running = make_run(status="running")
    with pytest.raises(ServiceError, match="only a queued run's priority can change"):
        run_set_priority(run=running, user=alice, priority="high")
    with pytest.raises(ServiceError, match="unknown priority 'urgent'; valid: high, normal, low"):
        run_set_priority(run=first, user=alice, priority="urgent")


def test_a_move_swaps_a_run_with_its_neighbour_of_the_same_priority(project: Any, alice: Any) -> None:
    for name in "abc":
        _submit(project, alice, name)
    _submit(project, alice, "urgent", "high")
    c = Run.objects.get(name="c")

    run_queue_move(run=c, user=alice, direction="up", may_pass=lambda other: True)
    assert _order() == ["urgent", "a", "c", "b"]
    run_queue_move(run=c, user=alice, direction="up", may_pass=lambda other: True)
    assert _order() == ["urgent", "c", "a", "b"]
    with pytest.raises(ServiceError, match="already first of its priority"):
        run_queue_move(run=c, user=alice, direction="up", may_pass=lambda other: True)


def test_a_move_never_jumps_over_a_run_the_user_cannot_change(
    project: Any, other_project: Any, alice: Any, eve: Any
) -> None:
    _submit(other_project, eve, "theirs")
    mine = _submit(project, alice, "mine")

    with pytest.raises(ServiceError, match="belongs to a project you cannot change"):
        run_queue_move(run=mine, user=alice, direction="up", may_pass=lambda other: other.project_id == project.pk)
    assert _order() == ["theirs", "mine"]


def test_each_queued_run_gets_its_position_and_a_start_estimated_from_the_pools_step_times(
    project: Any, alice: Any, make_run: Callable[..., Any]
) -> None:
    Worker.objects.create(name="cpu@h", hostname="h", queues=["cpu"], last_seen_at=timezone.now())
    running = make_run(status="running", steps=10)
    Run.objects.filter(pk=running.pk).update(step=2, started_at=timezone.now(), summary={"timing/step_s": 3.0})
    _submit(project, alice, "next", steps=5)
    _submit(project, alice, "after", steps=5)

    running_runs, entries = selectors.queue_entries("cpu")

    assert [r.pk for r in running_runs] == [running.pk]
    # One worker: 8 steps left on the running run (24 s), then "next" (5 steps, 15 s), then "after".
    assert [(e.run.name, e.position, e.starts_in) for e in entries] == [("next", 1, 24.0), ("after", 2, 39.0)]


def test_without_any_step_time_only_the_next_runs_start_is_known(project: Any, alice: Any) -> None:
    _submit(project, alice, "next")
    _submit(project, alice, "after")

    first, second = selectors.queue_entries("cpu")[1]

    assert (first.position, first.starts_in) == (1, 0.0)  # an idle worker takes it at once
    assert (second.position, second.starts_in) == (2, None)  # after a run of unknown length


def test_the_queue_page_shows_positions_and_hides_other_teams_runs(
    client_for: Callable[..., Any], project: Any, other_project: Any, alice: Any, eve: Any
) -> None:
    _submit(other_project, eve, "secret plan")
    _submit(project, alice, "my run", "high")

    body = client_for(alice).get(reverse("webapp-queue", args=["cpu"])).content.decode()

    assert body.index("my run") < body.index("a run of another team")
    assert "secret plan" not in body
    assert 'aria-label="Move my run up"' in body and 'aria-label="Priority of my run"' in body


def test_the_run_page_shows_a_queued_runs_place_and_lets_a_member_change_its_priority(
    client_for: Callable[..., Any], project: Any, alice: Any, vera: Any
) -> None:
    _submit(project, alice, "ahead")
    run = _submit(project, alice, "waiting")
    page = reverse("webapp-run-detail", args=[run.pk])

    body = client_for(vera).get(page).content.decode()
    assert 'id="queue-position">2<' in body and 'id="run-priority"' not in body  # a viewer only reads
    response = client_for(alice).post(reverse("webapp-run-priority", args=[run.pk]), {"priority": "high"})
    assert response.status_code == 302
    assert 'id="queue-position">1<' in client_for(alice).get(page).content.decode()


@pytest.mark.parametrize("view", ["webapp-run-priority", "webapp-run-move"])
def test_queue_changes_return_to_the_page_they_came_from_but_never_off_the_site(
    view: str, client_for: Callable[..., Any], project: Any, alice: Any
) -> None:
    run = _submit(project, alice, "waiting")
    queue_page = reverse("webapp-queue", args=["cpu"])
    client = client_for(alice)
    form = {"priority": "low", "direction": "up"}
    assert client.post(reverse(view, args=[run.pk]), {**form, "next": queue_page})["Location"] == queue_page
    for elsewhere in ("https://evil.example/queues/cpu/", "//evil.example/"):
        response = client.post(reverse(view, args=[run.pk]), {**form, "next": elsewhere})
        assert response["Location"] == run.get_absolute_url()
    # Over https, a plain-http "next" of this very host is refused too (as for every form that returns).
    insecure = client.post(reverse(view, args=[run.pk]), {**form, "next": "http://testserver/queues/"}, secure=True)
    assert insecure["Location"] == run.get_absolute_url()


def test_the_run_form_takes_a_priority(client_for: Callable[..., Any], project: Any, alice: Any) -> None:
    from tests.webapp.test_forms import form_data

    response = client_for(alice).post(
        reverse("webapp-run-create", args=[project.pk]), form_data(name="urgent one", priority="high")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Run.objects.get(name="urgent one").priority_name == "high"


def test_the_workers_page_links_each_queue_to_its_queue_page(client_for: Callable[..., Any], alice: Any) -> None:
    Worker.objects.create(name="gpu@h", hostname="h", queues=["cpu", "gpu-a100"], last_seen_at=timezone.now())

    body = client_for(alice).get(reverse("webapp-workers")).content.decode()

    assert f'href="{reverse("webapp-queue", args=["gpu-a100"])}"' in body
    assert client_for(alice).get(reverse("webapp-queues")).url == reverse("webapp-queue", args=["cpu"])
