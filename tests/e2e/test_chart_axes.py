"""Charts of a short run: step axes tick at whole steps only, and lines that coincide stay visible."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from tests.e2e.test_evaluations import FIXTURES, _math_samples, _report
from trainer.data.benchmarks import BENCHMARKS
from webapp.evaluations.services import EvalRequest, evaluation_store, evaluations_create
from webapp.models import Checkpoint, MetricPoint, Run

pytestmark = pytest.mark.e2e

STEPS = 4  # a short run: plotly's own ticks would fall at 1.5, 2.5, 3.5

# Per chart on the page that holds points: the x-axis tick labels plotly drew.
X_TICKS = """els => els.filter(el => (el.data || []).some(t => (t.x || []).length > 0))
  .map(el => [...el.querySelectorAll(".xtick text")].map(t => t.textContent))"""
# Per chart: each drawn line's name and dash style.
LINES = """els => els.map(el => (el.data || []).filter(t => t.showlegend !== false && t.name)
  .map(t => ({name: t.name, dash: (t.line && t.line.dash) || "solid"})))"""


def _short_run(make_run: Callable[..., Run], name: str, curves: dict[str, list[float]], **config: Any) -> Run:
    run = make_run(name=name, status="succeeded", steps=STEPS, **config)
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(run=run, key=key, step=i + 1, value=v)
            for key, values in curves.items()
            for i, v in enumerate(values)
        ]
    )
    run.summary = {key: values[-1] for key, values in curves.items()}
    run.step = STEPS
    run.save(update_fields=["summary", "step"])
    return run


def _wait_for_ticks(page: Page, selector: str) -> list[list[str]]:
    page.wait_for_function(
        f"""() => {{
          const charts = ({X_TICKS})([...document.querySelectorAll({selector!r})]);
          return charts.length > 0 && charts.every(ticks => ticks.length > 0);
        }}"""
    )
    page.wait_for_timeout(300)  # the switch to one tick per step is a relayout after the first draw
    return page.eval_on_selector_all(selector, X_TICKS)


def _assert_whole_steps(charts: list[list[str]]) -> None:
    assert charts, "no chart drew an axis"
    for ticks in charts:
        assert ticks and all(t.replace(",", "").isdigit() for t in ticks), ticks
        assert len(ticks) == len(set(ticks)), ticks  # no label written twice either


@pytest.fixture
def data_dir(settings: Any) -> Path:
    """The fixture benchmark files (MATH-500's three questions) as the server's data folder."""
    settings.PSL_DATA_DIR = FIXTURES
    settings.JUDGE_API_URL = ""
    return FIXTURES


CURVE = {"normal/accuracy": [0.25, 0.5, 0.25, 0.0], "train/reward": [0.1, 0.3, 0.2, 0.4]}


def test_a_short_runs_charts_tick_at_whole_steps(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], alice: Any
) -> None:
    run = _short_run(make_run, "four steps", CURVE)
    login(page, alice)
    page.goto(f"/runs/{run.pk}/")
    _assert_whole_steps(_wait_for_ticks(page, "#run-charts .js-plotly-plot"))
    shot("run-charts")


def test_compared_lines_that_coincide_are_drawn_dashed_and_named_and_ticks_are_whole_steps(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], project: Any, alice: Any
) -> None:
    first = _short_run(make_run, "eta 0.01", CURVE, eta=0.01)
    twin = _short_run(make_run, "eta 0.03", CURVE, eta=0.03)  # the very same curves
    other = _short_run(make_run, "eta 0.1", {k: [v + 0.1 for v in vs] for k, vs in CURVE.items()}, eta=0.1)
    login(page, alice)
    page.goto(f"/projects/{project.pk}/compare/?runs={first.pk},{twin.pk},{other.pk}&keys=normal/accuracy,train/reward")

    _assert_whole_steps(_wait_for_ticks(page, ".cmp-charts .js-plotly-plot"))
    for lines in page.eval_on_selector_all(".cmp-charts .js-plotly-plot", LINES):
        by_name = {line["name"]: line["dash"] for line in lines}
        assert by_name == {"eta 0.01": "solid", "eta 0.03 (same points as eta 0.01)": "dash", "eta 0.1": "solid"}
    expect(page.locator(".chart-note").first).to_contain_text("eta 0.03 (same points as eta 0.01)")
    expect(page.locator(".chart-note")).to_have_count(2)
    shot("coinciding-lines")


def test_the_evaluations_page_of_a_short_run_ticks_at_whole_steps(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], data_dir: Path, tmp_path: Path, bob: Any
) -> None:
    curves = {"normal/entropy": [0.6, 0.5, 0.55, 0.45], "he/entropy": [0.9, 0.85, 0.88, 0.8]}
    run = _short_run(make_run, "split, four steps", curves, checkpoint_every=STEPS)
    folder = tmp_path / "ckpt" / f"step_{STEPS:06d}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    Checkpoint.objects.create(run=run, step=STEPS, path=str(folder))
    request = EvalRequest(step=STEPS, benchmarks=("math500",), k=4, limit=3, max_new_tokens=256)
    for ev in evaluations_create(run=run, request=request, user=bob, enqueue=False):
        evaluation_store(ev, _report(ev.mode, _math_samples(ev.mode), graded=True), title=BENCHMARKS["math500"].title)

    login(page, bob)
    page.goto(f"/runs/{run.pk}/evaluations/")
    steps_charts = [c for c in _wait_for_ticks(page, ".js-plotly-plot") if c]
    _assert_whole_steps(steps_charts)
    shot("evaluations")
