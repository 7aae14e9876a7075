"""Launching an ablation grid: the preview lists every combination, and launching makes one study of them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login
from webapp.models import Run, Study
from webapp.services import run_cancel

pytestmark = pytest.mark.e2e


def test_alice_previews_an_eta_by_rollout_sharing_grid_and_launches_it_as_a_study_of_four_runs(
    page: Page,
    shot: Callable[[str], Any],
    project: Any,
    alice: Any,
) -> None:
    login(page, alice)
    page.goto(f"/projects/{project.pk}/runs/")
    page.get_by_role("link", name="New grid").first.click()
    expect(page.get_by_role("heading", name="New ablation grid")).to_be_visible()

    page.get_by_label("Factors:", exact=True).fill("eta = 0.01, 0.1\nrollout_sharing = true, false")
    page.get_by_label("Study name:", exact=True).fill("eta x sharing")
    page.get_by_label("Steps:", exact=True).fill("4")
    page.get_by_role("button", name="Preview").click()

    preview = page.locator("#grid-preview")
    expect(preview.get_by_role("heading")).to_have_text("Preview: 4 runs")
    rows = preview.locator("tbody tr")
    expect(rows).to_have_count(4)
    expect(preview.locator("thead th")).to_have_text(["#", "eta", "rollout_sharing", "Check", "Memory (cpu)"])
    cells = [rows.nth(i).locator("td.mono").all_inner_texts() for i in range(4)]
    assert sorted(cells) == [["0.01", "false"], ["0.01", "true"], ["0.1", "false"], ["0.1", "true"]], cells
    expect(preview.locator(".badge", has_text="ok")).to_have_count(4)
    expect(preview.locator(".grid-bad")).to_have_count(0)
    assert Run.objects.count() == 0  # a preview launches nothing
    shot("grid-preview")

    page.get_by_role("button", name="Launch 4 runs").click()
    try:
        expect(page.get_by_role("heading", name="eta x sharing")).to_be_visible()
        expect(page.locator(".messages")).to_contain_text("Launched study “eta x sharing” with 4 runs.")
        study = Study.objects.get(name="eta x sharing")
        assert page.url.endswith(f"/studies/{study.pk}/")
        runs = page.locator("table.study-runs tbody tr")
        expect(runs).to_have_count(4)
        expect(runs.locator(".badge", has_text="Queued")).to_have_count(4)
        headers = page.locator("table.study-runs thead th")
        expect(headers).to_contain_text(["Run", "η", "rollout_sharing"])
        # As rendered (CSS applied): an uppercased η would read as a Latin "H".
        expect(headers.nth(1)).to_have_text("η", use_inner_text=True)
        names = runs.locator(".sr-name a").all_inner_texts()
        assert len(set(names)) == 4 and all(name.startswith("eta x sharing") for name in names), names
        shot("study-page")

        page.get_by_role("link", name="Runs", exact=True).click()
        expect(page.locator("table.runs-table tbody tr")).to_have_count(4)
        assert {(r.config["eta"], r.config["rollout_sharing"], r.config["steps"]) for r in study.runs.all()} == {
            (0.01, True, 4),
            (0.01, False, 4),
            (0.1, True, 4),
            (0.1, False, 4),
        }
    finally:
        # The runs were really enqueued; no worker runs here, and none may pick them up later.
        for run in Run.objects.filter(status__in=["queued", "running"]):
            run_cancel(run=run, user=alice)


def test_the_factors_help_follows_the_search_mode(
    page: Page, browser_log: BrowserLog, project: Any, alice: Any
) -> None:
    browser_log.allow(r"status of 400 \(Bad Request\)")  # the invalid form below comes back as a 400
    login(page, alice)
    page.goto(f"/projects/{project.pk}/grid/")
    factors = page.get_by_label("Factors:", exact=True)
    help_text = page.locator(".run-field").filter(has=factors).locator(".help")
    expect(help_text).to_contain_text("every combination becomes a run")
    page.get_by_label("Search:", exact=True).select_option("random")
    expect(help_text).not_to_contain_text("every combination")
    expect(help_text).to_contain_text("each of the samples draws one value per line")
    expect(factors).to_have_attribute("placeholder", re.compile(r"loguniform\("))
    page.get_by_label("Search:", exact=True).select_option("grid")
    expect(help_text).to_contain_text("every combination becomes a run")
    expect(factors).to_have_attribute("placeholder", re.compile(r"^eta = "))

    # A random search sent back with an error keeps its mode's wording (the page renders it so).
    page.get_by_label("Search:", exact=True).select_option("random")
    factors.fill("lr = loguniform(1e-4, 1e-6)")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_text("low must be below high")).to_be_visible()
    expect(help_text).to_contain_text("each of the samples draws one value per line")
