"""Search beyond grids in the browser: a random search with successive halving launched as a study,
trained by a real worker that stops the losing draw at the rung, then the study's factors against
the outcome as parallel coordinates."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from tests.workers import WorkerProcess
from trainer.search import halving_stops
from webapp.models import ACTIVE_STATUSES, Run, Study
from webapp.worker.halving import value_at

pytestmark = pytest.mark.e2e

RUNS_TIMEOUT_S = 300
# Seed 4 draws max_new_tokens 4, 16, 4 (trainer.search.sample_space): the 16-token draw answers
# longer than the first run did at the rung, so successive halving on normal/length (lower is
# better) stops it; the third draw continues unless it answers longer than the first.
SPACE = "max_new_tokens = choice(4, 16)\nlr = loguniform(1e-6, 1e-4)"


def _fill_search_form(page: Page) -> None:
    page.get_by_label("Search:", exact=True).select_option("random")
    page.get_by_label("Factors:", exact=True).fill(SPACE)
    page.get_by_label("Samples:", exact=True).fill("3")
    page.get_by_label("Search seed:", exact=True).fill("4")
    page.get_by_text("Successive halving", exact=True).first.click()  # opens the section
    page.get_by_label("Successive halving", exact=True).check()
    page.get_by_label("Halving metric:", exact=True).fill("normal/length")
    page.get_by_label("Better is:", exact=True).select_option("min")
    page.get_by_label("Rungs (steps):", exact=True).fill("1")
    page.get_by_label("Study name:", exact=True).fill("length search")
    page.get_by_label("Model:", exact=True).fill("tiny-random")
    page.get_by_label("Algorithm:", exact=True).select_option(label="GRPO")
    page.get_by_label("Rollouts per mode (n):", exact=True).fill("2")
    page.get_by_label("Questions per step:", exact=True).fill("2")
    page.get_by_label("Steps:", exact=True).fill("16")  # tiny steps: room for the stop to land mid-run


def _wait_for_runs(study: Study, worker: WorkerProcess) -> list[Run]:
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    while Run.objects.filter(study=study, status__in=ACTIVE_STATUSES).exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the study's runs did not finish\nworker output:\n{worker.output()}")
        time.sleep(1)
    return list(Run.objects.filter(study=study).order_by("id"))


@pytest.mark.slow
def test_a_random_search_with_successive_halving_stops_the_losing_draw_and_plots_factors_against_the_outcome(
    page: Page,
    shot: Callable[[str], Any],
    start_worker: Callable[[str], WorkerProcess],
    project: Any,
    alice: Any,
) -> None:
    login(page, alice)
    page.goto(f"/projects/{project.pk}/grid/")
    _fill_search_form(page)
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#grid-preview")
    expect(preview.get_by_role("heading")).to_have_text("Preview: 3 runs")
    cells = [preview.locator("tbody tr").nth(i).locator("td.mono").first.inner_text() for i in range(3)]
    assert cells == ["4", "16", "4"], cells
    shot("random-search-preview")
    page.get_by_role("button", name="Launch 3 runs").click()
    expect(page.get_by_role("heading", name="length search")).to_be_visible()
    expect(page.get_by_test_id("study-search")).to_contain_text("max_new_tokens ~ choice(4, 16)")
    expect(page.get_by_test_id("study-search")).to_contain_text("successive halving on normal/length")
    study = Study.objects.get(name="length search")

    worker = start_worker("e2e")
    runs = _wait_for_runs(study, worker)
    # Replay the rule over the runs in the order they trained: exactly the judged ones were stopped.
    at_rung = value_at([r.pk for r in runs], "normal/length", 1)
    expected = [
        halving_stops(at_rung[r.pk], [at_rung[o.pk] for o in runs[:i]], reduction=2, mode="min")[0]
        for i, r in enumerate(runs)
    ]
    assert [r.status == "cancelled" for r in runs] == expected, [(r.status, at_rung.get(r.pk)) for r in runs]
    assert expected[:2] == [False, True], at_rung  # 16-token answers lose to the first run's 4
    assert [r.status for r in runs] == ["cancelled" if stop else "succeeded" for stop in expected]
    assert runs[1].step < 16  # stopped early, not trained to the end
    counted = expected.count(False)
    assert "worse than the best 1/2 of 1 earlier run: stopped" in runs[1].logs.get(source="web").message

    page.reload()
    stopped = page.locator(f"table.study-runs tr[data-run='{runs[1].pk}']")
    expect(stopped.locator(".sr-counted")).to_contain_text("excluded: cancelled")
    chart = page.locator("#study-parcoords")
    expect(chart).to_have_class(re.compile(r"\bjs-plotly-plot\b"))
    # One SVG line per run (plotly's WebGL parcoords would need eval, which the CSP refuses).
    kind = page.evaluate("() => document.getElementById('study-parcoords').data.map(t => t.type)")
    assert kind == ["scatter"] * counted, kind
    assert "WebGL is not supported" not in chart.inner_text()
    expect(page.locator("#parcoords-outcome")).to_have_value("normal/length")
    expect(page.locator("#parcoords-n")).to_have_text(f"{counted} run{'s' if counted != 1 else ''} counted")
    chart.scroll_into_view_if_needed()
    shot("study-parallel-coordinates")

    page.locator("#parcoords-outcome").select_option("train/reward")
    expect(page).to_have_url(f"{page.url.split('?')[0]}?outcome=train%2Freward")
    expect(page.locator("#parcoords-n")).to_have_text(f"{counted} run{'s' if counted != 1 else ''} counted")
    axes = """() => { const el = document.getElementById('study-parcoords');
      return el.data && el.data.length ? el.layout.xaxis.ticktext : []; }"""
    # The count reads the same for both outcomes, so wait for the redraw itself, not for the count.
    page.wait_for_function(f"() => ({axes})().slice(-1)[0] === 'train/reward'")
    dims = page.evaluate(axes)
    assert sorted(dims[:-1]) == ["lr", "max_new_tokens"] and dims[-1] == "train/reward", dims  # the outcome last
    shot("study-parallel-coordinates-reward")


# --- a loguniform factor on a log axis -----------------------------------------------------------------------

LR_RANGE = (1e-6, 1e-4)
LRS = [1e-6, 1e-5, 1e-4]  # on a log10 axis over the range: at 0, 1/2 and 1 (linear would put 1e-5 at 0.09)
LR_HOVERS = ["lr = 1e-6", "lr = 1e-5", "lr = 1e-4"]
LOG_TICKS = ["1e-6", "2e-6", "5e-6", "1e-5", "2e-5", "5e-5", "1e-4"]
TEXTS = "els => els.map(e => e.textContent)"  # SVG text has no innerText


def _lr_study(make_run: Callable[..., Run], project: Any, alice: Any) -> Study:
    study = Study.objects.create(
        project=project,
        name="lr search",
        factors={"lr": LRS, "max_new_tokens": [4, 16]},
        search={"kind": "random", "space": {"lr": "loguniform(1e-6, 1e-4)", "max_new_tokens": "choice(4, 16)"}},
        created_by=alice,
    )
    for i, (lr, tokens) in enumerate(zip(LRS, [4, 16, 4], strict=True)):
        run = make_run(name=f"lr {lr:g}", lr=lr, max_new_tokens=tokens, status="succeeded")
        run.study, run.summary = study, {"train/reward": 0.2 + 0.3 * i}
        run.save()
    return study


def _position(lr: float) -> float:
    low, high = (math.log10(v) for v in LR_RANGE)
    return (math.log10(lr) - low) / (high - low)


def _assert_lr_axis_is_log_scaled(page: Page) -> None:
    """Every run's line crosses the lr axis at log10 of its lr, the ticks read 1e-6 … 1e-4."""
    page.wait_for_function(
        "() => { const d = document.getElementById('study-parcoords').data; return d && d.length === 3; }"
    )
    axis = page.evaluate(
        """() => { const el = document.getElementById('study-parcoords'), j = el.layout.xaxis.ticktext.indexOf('lr');
          const ticks = el.layout.annotations.filter(a => a.name === 'log-tick' && a.x === j);
          return { types: el.data.map(t => t.type), ys: el.data.map(t => [t.name, t.y[j], t.text[j]]),
                   ticks: ticks.map(a => [a.text, a.y]) }; }"""
    )
    assert axis["types"] == ["scatter"] * 3, axis
    for (name, y, _), lr in zip(axis["ys"], LRS, strict=True):
        assert name == f"lr {lr:g}" and y == pytest.approx(_position(lr)), axis["ys"]
    assert [text for _, _, text in axis["ys"]] == LR_HOVERS  # the hover names the value, not its logarithm
    assert [t for t, _ in axis["ticks"]] == LOG_TICKS
    assert [y for _, y in axis["ticks"]] == pytest.approx([_position(float(t)) for t in LOG_TICKS])
    drawn = page.eval_on_selector_all("#study-parcoords .annotation-text", TEXTS)
    assert set(LOG_TICKS) <= set(drawn), drawn


def test_a_loguniform_factor_is_plotted_on_a_log_axis(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], project: Any, alice: Any
) -> None:
    study = _lr_study(make_run, project, alice)
    login(page, alice)
    page.goto(f"/studies/{study.pk}/?outcome=train/reward")
    _assert_lr_axis_is_log_scaled(page)
    page.locator("#study-parcoords").scroll_into_view_if_needed()
    shot("lr-log-axis")
