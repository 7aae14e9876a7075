"""Search beyond grids: random search launched as a study, successive halving judged as metrics
arrive, and the parallel-coordinates data of a study's factors against an outcome."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from tests.webapp.test_forms import form_data
from trainer.search import Halving
from webapp.forms import GridForm
from webapp.models import Activity, MetricPoint, Run, Study
from webapp.worker.halving import HalvingWatcher

pytestmark = pytest.mark.django_db


def random_form(**overrides: Any) -> GridForm:
    data = form_data(
        name="lr search",
        search="random",
        factors="lr = loguniform(1e-6, 1e-4)\neta = uniform(0.01, 0.1)\nrollout_sharing = true, false",
        samples="6",
        search_seed="3",
    )
    return GridForm({**data, **overrides})


def test_a_random_search_draws_the_samples_and_validates_each_config() -> None:
    form = random_form()
    assert form.is_valid(), form.errors
    assert form.cells is not None and len(form.cells) == 6
    configs = [c.config for c in form.cells if c.config]
    assert len(configs) == 6 and all(1e-6 <= c.lr <= 1e-4 and 0.01 <= c.eta <= 0.1 for c in configs)
    assert {type(c.rollout_sharing) for c in configs} == {bool}
    assert form.search_settings() == {
        "kind": "random",
        "space": {
            "lr": "loguniform(1e-06, 0.0001)",
            "eta": "uniform(0.01, 0.1)",
            "rollout_sharing": "choice(true, false)",
        },
        "samples": 6,
        "seed": 3,
    }
    again = random_form()
    assert again.is_valid() and [c.values for c in again.cells or []] == [c.values for c in form.cells]


def test_a_random_search_times_the_seeds_and_names_bad_ranges_by_line() -> None:
    form = random_form(seed="0, 1")
    assert form.is_valid(), form.errors
    assert len(form.cells or []) == 12
    bad = random_form(factors="lr = loguniform(0, 1e-4)\nwarmup = uniform(0, 1)")
    assert not bad.is_valid()
    assert bad.errors["factors"] == [
        "Line 1: lr: loguniform needs low > 0",
        "Line 2: “warmup” is not a config field.",
    ]


def test_a_drawn_config_the_trainer_rejects_is_flagged_in_the_preview() -> None:
    form = random_form(factors="alpha = uniform(0.5, 1.5)", samples="8")
    assert not form.is_valid()
    assert any("alpha: must be in [0.0, 1.0]" in c.error for c in form.cells or [])


def test_successive_halving_settings_are_checked_against_the_runs_steps() -> None:
    form = random_form(halving="on", halving_metric="train/reward", halving_rungs="2, 4", steps="10")
    assert form.is_valid(), form.errors
    assert form.search_settings()["halving"] == Halving("train/reward", (2, 4)).to_dict()
    late = random_form(halving="on", halving_rungs="2, 10", steps="10")
    assert not late.is_valid() and "Rungs must come before the last step (10)." in late.errors["halving_rungs"]
    assert not random_form(halving="on", halving_rungs="two").is_valid()


def test_a_random_search_launches_as_one_study_that_records_its_space(
    client_for: Callable[..., Any], alice: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    data = {**random_form().data, "halving": "on", "halving_rungs": "2", "halving_mode": "min"}
    data["halving_metric"] = "normal/length"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(alice).post(reverse("webapp-grid-create", args=[project.pk]), data)
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == study.get_absolute_url()
    assert study.runs.count() == 6 and len(callbacks) == 6
    assert study.search["kind"] == "random" and study.search["halving"]["metric"] == "normal/length"
    assert list(study.factors) == ["lr", "eta", "rollout_sharing"]
    page = client_for(alice).get(study.get_absolute_url()).content.decode()
    assert "random search: 6 draws, seed 3" in page and "lr ~ loguniform(1e-06, 0.0001)" in page
    assert "successive halving on normal/length (lower is better) at steps 2, keeping the best 1/2" in page


# --- successive halving, judged by the worker ------------------------------------------------------------


@pytest.fixture
def halving_study(project: Any, alice: Any, make_run: Callable[..., Run]) -> Callable[..., Run]:
    study = Study.objects.create(
        project=project,
        name="asha",
        factors={"eta": [0.01, 0.1]},
        search={"halving": Halving("train/reward", (2,), "max", 2).to_dict()},
        created_by=alice,
    )

    def run_with(rewards: list[float], *, status: str = "running") -> Run:
        run = make_run(status=status, steps=6)
        run.study, run.step = study, len(rewards)
        run.save()
        MetricPoint.objects.bulk_create(
            [MetricPoint(run=run, key="train/reward", step=s, value=v) for s, v in enumerate(rewards, 1)]
        )
        return run

    return run_with


def metrics_events(run: Run) -> list[dict[str, Any]]:
    points = MetricPoint.objects.filter(run=run).order_by("step")
    return [{"kind": "metrics", "step": p.step, "values": {p.key: p.value}} for p in points]


def test_the_first_run_to_reach_a_rung_continues(halving_study: Callable[..., Run]) -> None:
    first = halving_study([0.0, 0.1])
    HalvingWatcher(first).events(metrics_events(first))
    first.refresh_from_db()
    assert not first.cancel_requested
    assert (
        first.logs.get().message
        == "successive halving at step 2: train/reward = 0.1, the first run at this rung: continues"
    )


def test_a_run_worse_than_the_best_half_of_the_earlier_runs_is_asked_to_stop(
    halving_study: Callable[..., Run],
) -> None:
    halving_study([0.2, 0.5], status="succeeded")
    halving_study([0.1, 0.3], status="succeeded")
    halving_study([0.0], status="failed")  # never reached the rung: not compared
    loser = halving_study([0.4, 0.25, 0.9])  # what counts is its value at the rung (step 2)
    watcher = HalvingWatcher(loser)
    watcher.events(metrics_events(loser))
    loser.refresh_from_db()
    assert loser.cancel_requested and watcher.stopped  # the supervisor passes it on without waiting for a beat
    line = loser.logs.get()
    assert line.level == "warning"
    assert line.message == (
        "successive halving at step 2: train/reward = 0.25, cutoff 0.5 (higher is better), "
        "worse than the best 1/2 of 2 earlier runs: stopped"
    )
    assert Activity.objects.filter(verb="stopped by successive halving").exists()


def test_a_run_in_the_best_half_continues_and_each_rung_is_judged_once(halving_study: Callable[..., Run]) -> None:
    halving_study([0.2, 0.5], status="succeeded")
    winner = halving_study([0.1, 0.6])
    watcher = HalvingWatcher(winner)
    watcher.events(metrics_events(winner))
    watcher.events(metrics_events(winner))
    winner.refresh_from_db()
    assert not winner.cancel_requested and not watcher.stopped and winner.logs.count() == 1


def test_runs_outside_a_halving_study_are_never_judged(make_run: Callable[..., Run]) -> None:
    run = make_run(status="running")
    MetricPoint.objects.create(run=run, key="train/reward", step=5, value=0.0)
    HalvingWatcher(run).events(metrics_events(run))
    assert not run.logs.exists()


# --- parallel coordinates ------------------------------------------------------------------------------------


def test_the_parallel_coordinates_hold_each_factor_then_the_chosen_outcome(
    client_for: Callable[..., Any], vera: Any, project: Any, alice: Any, make_run: Callable[..., Run]
) -> None:
    study = Study.objects.create(
        project=project, name="s", factors={"eta": [0.01, 0.1], "rollout_sharing": [True, False]}, created_by=alice
    )
    for eta, sharing, acc, status in [
        (0.01, True, 0.2, "succeeded"),
        (0.1, False, 0.6, "succeeded"),
        (0.1, True, 0.9, "failed"),  # excluded by default: not drawn
    ]:
        run = make_run(eta=eta, rollout_sharing=sharing, status=status)
        run.study, run.summary = study, {"normal/accuracy": acc, "train/reward": acc / 2}
        run.save()
    url = reverse("webapp-study-parcoords", args=[study.pk])
    data = client_for(vera).get(url).json()
    assert data["outcome"] == "normal/accuracy" and data["outcomes"] == ["normal/accuracy", "train/reward"]
    assert data["n"] == 2 and data["direction"] == 1
    eta, sharing, outcome = data["dimensions"]
    assert (eta["label"], eta["values"]) == ("η", [0.01, 0.1])
    assert (sharing["values"], sharing["ticktext"]) == ([0, 1], ["on", "off"])
    assert outcome == {"label": "normal/accuracy", "field": "normal/accuracy", "values": [0.2, 0.6], "outcome": True}
    other = client_for(vera).get(url + "?outcome=train/reward").json()
    assert other["outcome"] == "train/reward" and other["dimensions"][-1]["values"] == [0.1, 0.3]
    assert client_for(vera).get(url + "?outcome=nope").json()["outcome"] == "normal/accuracy"


def test_a_loguniform_factor_gets_a_log10_axis_with_readable_ticks_over_its_range(
    client_for: Callable[..., Any], vera: Any, project: Any, alice: Any, make_run: Callable[..., Run]
) -> None:
    space = {"lr": "loguniform(1e-6, 1e-4)", "max_new_tokens": "choice(4, 16)"}
    study = Study.objects.create(
        project=project,
        name="s",
        factors={"lr": [2e-6, 3e-5], "max_new_tokens": [4, 16]},
        search={"kind": "random", "space": space},
    )
    for lr, tokens in [(2e-6, 4), (3e-5, 16)]:
        run = make_run(lr=lr, max_new_tokens=tokens, status="succeeded")
        run.study, run.summary = study, {"train/reward": 0.5}
        run.save()
    data = client_for(vera).get(reverse("webapp-study-parcoords", args=[study.pk])).json()
    lr, tokens, _ = data["dimensions"]
    assert lr["scale"] == "log" and lr["raw"] == [2e-6, 3e-5]
    assert lr["values"] == pytest.approx([math.log10(2e-6), math.log10(3e-5)])
    assert lr["range"] == pytest.approx([-6, -4])  # the search's range, not only the draws'
    assert lr["ticktext"] == ["1e-6", "2e-6", "5e-6", "1e-5", "2e-5", "5e-5", "1e-4"]
    assert lr["tickvals"] == pytest.approx([math.log10(float(t)) for t in lr["ticktext"]])
    assert "scale" not in tokens and tokens["values"] == [4.0, 16.0]  # a choice stays linear
