"""A study counts only the runs it can trust: a cancelled seed is shown as excluded and left out of
the tables and curves until a member includes it by hand (the choice is stored with the study)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from tests.workers import WorkerProcess
from webapp.models import Run, Study

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_MS = 180_000


def _launch_two_seed_grid(page: Page, project: Any) -> Study:
    page.goto(f"/projects/{project.pk}/grid/")
    page.get_by_label("Factors:", exact=True).fill("seed = 0, 1")
    page.get_by_label("Study name:", exact=True).fill("two seeds")
    page.get_by_label("Model:", exact=True).fill("tiny-random")
    page.get_by_label("Algorithm:", exact=True).select_option(label="GRPO")
    page.get_by_label("Rollouts per mode (n):", exact=True).fill("2")
    page.get_by_label("Questions per step:", exact=True).fill("2")
    page.get_by_label("Max new tokens:", exact=True).fill("8")
    page.get_by_label("Steps:", exact=True).fill("2")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#grid-preview").get_by_role("heading")).to_have_text("Preview: 2 runs")
    page.get_by_role("button", name="Launch 2 runs").click()
    expect(page.get_by_role("heading", name="two seeds")).to_be_visible()
    return Study.objects.get(name="two seeds")


def test_a_cancelled_seed_is_excluded_from_the_study_until_a_member_includes_it(
    page: Page,
    shot: Callable[[str], Any],
    start_worker: Callable[[str], WorkerProcess],
    project: Any,
    alice: Any,
) -> None:
    login(page, alice)
    study = _launch_two_seed_grid(page, project)
    rows = page.locator("table.study-runs tbody tr")
    expect(rows).to_have_count(2)
    seed1 = Run.objects.get(study=study, seed=1)
    page.goto(seed1.get_absolute_url())
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#run-header .badge").first).to_have_text("Cancelled")

    worker = start_worker("e2e")
    seed0 = Run.objects.get(study=study, seed=0)
    page.goto(seed0.get_absolute_url())
    try:
        expect(page.locator("#run-header .badge").first).to_have_text("Succeeded", timeout=RUN_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None

    page.goto(study.get_absolute_url())
    cancelled = page.locator(f"table.study-runs tr[data-run='{seed1.pk}']")
    expect(cancelled).to_have_class(re.compile(r"\bis-excluded\b"))
    expect(cancelled.locator(".sr-counted")).to_contain_text("excluded: cancelled")
    expect(page.get_by_test_id("excluded-count")).to_have_text("1 excluded")
    expect(page.locator(".page-head")).to_contain_text("1 run counted in 1 group")
    final_rows = page.locator(".metrics-table tbody tr")
    expect(final_rows).to_have_count(1)
    expect(final_rows.first.locator(".mt-seeds")).to_have_count(0)  # one counted run, not "2 runs · seeds 0, 1"
    expect(page.locator("[data-chart].js-plotly-plot").first).to_be_visible()  # the curves, fetched by the page
    shot("study-with-excluded-run")

    cancelled.get_by_role("button", name="Include").click()
    expect(page.locator(".messages")).to_contain_text("is counted in the study's tables and curves")
    cancelled = page.locator(f"table.study-runs tr[data-run='{seed1.pk}']")
    expect(cancelled.locator(".sr-counted")).to_contain_text("included by hand (cancelled)")
    expect(page.locator(".metrics-table .mt-seeds").first).to_have_text("2 runs · seeds 0, 1")
    expect(page.get_by_test_id("excluded-count")).to_have_count(0)
    study.refresh_from_db()
    assert study.run_choices == {str(seed1.pk): "include"}
    expect(page.locator("[data-chart].js-plotly-plot").first).to_be_visible()
    shot("study-run-included-by-hand")
