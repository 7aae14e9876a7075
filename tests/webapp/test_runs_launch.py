"""Launching runs and grids from the web: validation by the trainer's config, clone, seeds, preview."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from tests.webapp.test_forms import form_data
from webapp.models import Run, Study

pytestmark = pytest.mark.django_db


def new_url(project: Any, query: str = "") -> str:
    return reverse("webapp-run-create", args=[project.pk]) + (f"?{query}" if query else "")


def grid_url(project: Any) -> str:
    return reverse("webapp-grid-create", args=[project.pk])


def test_it_shows_the_form_with_help_texts(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    response = client_for(alice).get(new_url(project))
    assert response.status_code == 200
    body = response.content.decode()
    assert "κ=1" in body and "Entropy-driven advantage" in body and "Advanced" in body
    assert '<datalist id="id_model-options">' in body


def test_it_launches_a_run_and_redirects_to_it(
    client_for: Callable[..., Any], bob: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    data = form_data(name="my run", eta="0.06", kappa="1", tags="baseline, paper", wandb="on")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(bob).post(new_url(project), data)
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert (run.name, run.config["eta"], run.config["kappa"]) == ("my run", 0.06, 1.0)
    assert run.wandb_enabled
    assert sorted(run.tags.values_list("name", flat=True)) == ["baseline", "paper"]
    assert run.created_by == bob
    assert len(callbacks) == 1  # enqueued once, after commit


@pytest.mark.parametrize(
    ("field", "value"),
    [("eta", "-1"), ("mini_batches", "3"), ("model", "bad model!"), ("n", "x"), ("queue", "nope"), ("seed", "")],
)
def test_it_enqueues_nothing_when_a_field_is_invalid(
    field: str,
    value: str,
    client_for: Callable[..., Any],
    alice: Any,
    project: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(alice).post(new_url(project), form_data(**{field: value}))
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Run.objects.exists()
    assert callbacks == []
    assert "Nothing was launched" in response.content.decode()


def test_it_launches_one_run_per_seed(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    response = client_for(alice).post(new_url(project), form_data(name="sweep", seed="1, 2, 3"))
    assert response.status_code == 302
    assert response["Location"] == reverse("webapp-run-list", args=[project.pk])
    assert sorted(Run.objects.values_list("seed", "name")) == [(1, "sweep s1"), (2, "sweep s2"), (3, "sweep s3")]


def test_it_prefills_the_form_from_a_clone(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    source = make_run(name="source", eta=0.1, kappa=1.0, seed=5, rollout_sharing=False)
    response = client_for(alice).get(new_url(project, f"clone={source.pk}"))
    form = response.context["form"]
    assert form["eta"].value() == 0.1 and form["kappa"].value() == 1.0 and form["seed"].value() == "5"
    assert form["rollout_sharing"].value() is False
    assert form["name"].value() == "source (clone)"


def test_it_links_a_launched_clone_to_its_parent(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    source = make_run(name="source")
    client_for(alice).post(new_url(project, f"clone={source.pk}"), form_data(name="child"))
    assert Run.objects.get(name="child").parent == source


def test_it_hides_clone_sources_of_other_teams(
    client_for: Callable[..., Any], eve: Any, other_project: Any, make_run: Callable[..., Any]
) -> None:
    secret = make_run(name="secret")
    response = client_for(eve).get(new_url(other_project, f"clone={secret.pk}"))
    assert response.status_code == 404


def test_it_previews_a_grid_without_creating_anything(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    factors = "eta = 0.01, 0.03, 0.1\nrollout_sharing = true, false"
    data = form_data(name="eta sweep", factors=factors, preview="1")
    response = client_for(alice).post(grid_url(project), data)
    assert response.status_code == 200
    assert len(response.context["form"].cells) == 6
    assert "Launch 6 runs" in response.content.decode()
    assert not Run.objects.exists() and not Study.objects.exists()


def test_it_reports_invalid_grid_cells_in_the_preview(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    data = form_data(name="bad", factors="n = 3, 4", mini_batches="32", micro_batch_size="8", preview="1")
    response = client_for(alice).post(grid_url(project), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Launch 2 runs" not in body
    assert "1 of 2 runs have an invalid config" in body


def test_it_launches_a_grid_as_a_study(
    client_for: Callable[..., Any], alice: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    data = form_data(name="eta sweep", factors="eta = 0.01, 0.03, 0.1\nseed = 1, 2", description="why")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(alice).post(grid_url(project), data)
    study = Study.objects.get()
    assert response.status_code == 302
    assert study.factors == {"eta": [0.01, 0.03, 0.1], "seed": [1, 2]}
    assert study.runs.count() == 6 and len(callbacks) == 6
    assert sorted({(r.config["eta"], r.seed) for r in study.runs.all()}) == [
        (0.01, 1),
        (0.01, 2),
        (0.03, 1),
        (0.03, 2),
        (0.1, 1),
        (0.1, 2),
    ]


def test_it_refuses_a_grid_over_the_cap(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    seeds = ", ".join(str(i) for i in range(30))
    factors = f"seed = {seeds}\neta = 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07"
    response = client_for(alice).post(grid_url(project), form_data(name="huge", factors=factors))
    assert response.status_code == 400
    assert "210 runs; the limit is 200" in response.content.decode()
    assert not Run.objects.exists()


def test_it_reports_an_unknown_factor_on_its_line(client_for: Callable[..., Any], alice: Any, project: Any) -> None:
    response = client_for(alice).post(grid_url(project), form_data(name="x", factors="eta = 0.1\nwarp = 9"))
    assert response.status_code == 400
    assert "Line 2: “warp” is not a config field." in response.context["form"].errors["factors"]


def test_it_clones_a_run_whose_stored_config_has_a_field_this_version_does_not_know(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    source = make_run(name="old", eta=0.1)
    source.config = {**source.config, "warmup_ratio": 0.1}
    source.save(update_fields=["config"])
    response = client_for(alice).get(new_url(project, f"clone={source.pk}"))
    assert response.status_code == 200  # it was a 500: the stored config no longer built
    assert response.context["form"]["eta"].value() == 0.1
    assert "warmup_ratio=0.1 dropped: not a field of this version" in response.content.decode()
    grid = client_for(alice).get(grid_url(project) + f"?clone={source.pk}")
    assert grid.status_code == 200 and "warmup_ratio=0.1 dropped" in grid.content.decode()


def test_a_resume_of_an_older_schema_says_what_changed_in_its_config(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    old = make_run(name="old", status="lost")
    old.config = {**old.config, "warmup_ratio": 0.1}
    old.save(update_fields=["config"])
    response = client_for(alice).post(reverse("webapp-run-resume", args=[old.pk]), follow=True)
    body = response.content.decode()
    assert "Resumed as attempt 1." in body
    assert "Its stored config was migrated to this version: warmup_ratio=0.1 dropped" in body


def test_the_grid_form_renders_every_field_it_requires(
    client_for: Callable[..., Any], alice: Any, project: Any
) -> None:
    # A required field missing from the page fails every preview in the browser with no field shown.
    response = client_for(alice).get(grid_url(project))
    form, body = response.context["form"], response.content.decode()
    missing = [name for name, f in form.fields.items() if f.required and f'name="{name}"' not in body]
    assert missing == []
