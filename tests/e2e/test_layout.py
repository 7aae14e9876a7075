"""The page frame and charts as rendered: the heatmap's auto colour scale, the Evaluations charts'
labels and lines inside their boxes, the navigation on global pages, the favicon."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from tests.e2e.test_evaluations import FIXTURES, _evaluated_run
from webapp.models import Run, Sample

pytestmark = pytest.mark.e2e

# Where plotly drew each part of a chart, in page pixels.
CHART_BOXES = """el => {
  const box = n => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const all = sel => [...el.querySelectorAll(sel)].map(box);
  return {
    chart: box(el), plot: box(el.querySelector(".nsewdrag")), ytitle: box(el.querySelector(".g-ytitle")),
    yticks: all(".ytick text"), legend: box(el.querySelector(".legend")), lines: all(".scatterlayer .js-line"),
  };
}"""


@pytest.fixture
def data_dir(settings: Any) -> Path:
    """The fixture benchmark files as the server's data folder (as in test_evaluations)."""
    settings.PSL_DATA_DIR = FIXTURES
    settings.JUDGE_API_URL = ""
    return FIXTURES


def _inside(inner: list[float], outer: list[float], slack: float = 1.5) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def test_the_evaluation_charts_keep_axis_titles_clear_of_the_ticks_and_lines_inside_the_plot(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], data_dir: Path, tmp_path: Path, bob: Any
) -> None:
    run = _evaluated_run(make_run, tmp_path, bob)
    login(page, bob)
    page.goto(f"/runs/{run.pk}/evaluations/")
    for chart_id in ("chart-kl", "chart-entropy"):
        chart = page.locator(f"#{chart_id}")
        expect(chart.locator(".scatterlayer .js-line").first).to_be_attached()
        boxes = chart.evaluate(CHART_BOXES)
        # The axis title sits left of every tick label, not across them.
        assert boxes["ytitle"][2] <= min(t[0] for t in boxes["yticks"]), (chart_id, boxes)
        assert _inside(boxes["legend"], boxes["chart"]), (chart_id, boxes)
        assert boxes["legend"][3] <= boxes["plot"][1] + 1, (chart_id, boxes)  # above the plot, not across it
        assert boxes["lines"] and all(_inside(line, boxes["plot"], 3) for line in boxes["lines"]), (chart_id, boxes)
    page.locator("#eval-analysis").scroll_into_view_if_needed()
    shot("evaluation-charts")


def _sample(run: Run, mode: str, surprisal: list[float]) -> Sample:
    tokens = [f" w{i}" for i in range(len(surprisal))]
    return Sample.objects.create(
        run=run,
        step=1,
        question_id="q1",
        mode=mode,
        context=mode,
        prompt="<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
        answer="4",
        response="".join(tokens),
        reward=0.0,
        length=len(tokens),
        tokens=tokens,
        surprisal=surprisal,
    )


def test_the_heatmap_spreads_an_untrained_models_surprisal_over_the_colours_and_can_be_fixed(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], alice: Any
) -> None:
    run = make_run(name="untrained", status="succeeded")
    # What tiny-random answers: every token between 9 and 12 nats.
    _sample(run, "normal", [9.0 + (i * 7 % 30) / 10 for i in range(60)])
    _sample(run, "he", [9.5 + (i * 11 % 25) / 10 for i in range(60)])
    login(page, alice)
    page.goto(f"/runs/{run.pk}/side-by-side/")
    tokens = page.locator(".sbs-col .resp-heat .tok")
    expect(tokens.first).to_be_visible()
    buckets = {c for c in tokens.evaluate_all("els => els.map(e => e.className.split(' ')[1])")}
    assert len(buckets) >= 8, buckets  # auto: the colours tell tokens apart
    expect(page.locator(".heat-legend .seg a.active")).to_have_text("auto")
    expect(page.locator(".heat-legend .heat-swatch").nth(1)).to_have_attribute("title", re.compile(r"≥ 9\.\d+ nats"))
    shot("heatmap-auto")

    page.locator(".heat-legend").get_by_role("link", name="fixed").click()
    expect(page).to_have_url(re.compile(r"scale=fixed"))
    buckets = {c for c in tokens.evaluate_all("els => els.map(e => e.className.split(' ')[1])")}
    assert buckets == {"h9"}  # the fixed 0–6 nats scale: one saturated red
    shot("heatmap-fixed")


def test_the_navigation_keeps_its_project_on_the_workers_and_tokens_pages_and_there_is_a_favicon(
    page: Page, shot: Callable[[str], Any], project: Any, alice: Any
) -> None:
    login(page, alice)
    page.goto(f"/projects/{project.pk}/runs/")
    nav = page.locator("nav.topnav")
    for link in ("Workers", "API tokens"):
        page.get_by_role("link", name=link, exact=True).click()
        expect(nav.get_by_role("link")).to_have_text(["Runs", "Studies", "Compare", "Activity", "Workers", "Queues"])
        expect(page.locator(".topbar .crumb")).to_have_text("Lab / Entropy")
        shot(f"nav-{link.lower().replace(' ', '-')}")
    nav.get_by_role("link", name="Studies").click()
    expect(page.get_by_role("heading", name="Studies", exact=True)).to_be_visible()
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon == "/static/img/favicon.svg"
    response = page.request.get(icon)
    assert response.ok and response.headers["content-type"].startswith("image/svg")
