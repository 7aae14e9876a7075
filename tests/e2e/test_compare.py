"""Comparing two finished runs: overlay charts with one line per run, and a final-metrics table with deltas."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login, plot_traces
from webapp.models import MetricPoint, Run

pytestmark = pytest.mark.e2e

STEPS = 50
KEYS = ("normal/accuracy", "he/accuracy", "train/reward", "normal/entropy")


def _finished_run(make_run: Callable[..., Run], name: str, eta: float, lift: float) -> Run:
    """A succeeded run with smooth learning curves; ``lift`` raises its accuracies and reward."""
    run = make_run(name=name, status="succeeded", eta=eta, steps=STEPS)
    curves = {
        "normal/accuracy": lambda s: 0.2 + lift + 0.4 * (1 - math.exp(-s / 15)),
        "he/accuracy": lambda s: 0.15 + lift + 0.35 * (1 - math.exp(-s / 20)),
        "train/reward": lambda s: 0.1 + lift + 0.5 * (1 - math.exp(-s / 12)),
        "normal/entropy": lambda s: 1.2 - 0.6 * (1 - math.exp(-s / 25)) + eta,
    }
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(run=run, key=key, step=step, value=curve(step))
            for key, curve in curves.items()
            for step in range(1, STEPS + 1)
        ]
    )
    run.summary = {key: curve(STEPS) for key, curve in curves.items()}
    run.step = STEPS
    run.save(update_fields=["summary", "step"])
    return run


def test_two_finished_runs_compare_as_overlaid_curves_and_a_final_metrics_table_with_deltas(
    page: Page,
    shot: Callable[[str], Any],
    make_run: Callable[..., Run],
    project: Any,
    alice: Any,
) -> None:
    low = _finished_run(make_run, "eta 0.01", eta=0.01, lift=0.0)
    high = _finished_run(make_run, "eta 0.1", eta=0.1, lift=0.05)

    login(page, alice)
    page.goto(f"/projects/{project.pk}/runs/")
    page.get_by_role("checkbox", name="Select eta 0.01").check()
    page.get_by_role("checkbox", name="Select eta 0.1").check()
    page.get_by_role("button", name="Compare", exact=True).click()

    expect(page.get_by_role("heading", name="Compare", exact=True)).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/compare/\?runs=({low.pk},{high.pk}|{high.pk},{low.pk})$"))
    expect(page.locator("#run-count")).to_have_text("2 selected")
    expect(page.locator(".cmp-legend .legend-item")).to_have_count(2)
    assert sorted(page.locator(".cmp-legend .legend-item").all_inner_texts()) == ["eta 0.01", "eta 0.1"]

    # One chart per metric (the first four logged), each with one drawn line per run.
    page.wait_for_function("""() => {
      const plots = [...document.querySelectorAll(".cmp-charts .js-plotly-plot")];
      return plots.length === 4 && plots.every(p => p.data && p.data.length === 2);
    }""")
    charts = plot_traces(page, ".cmp-charts .js-plotly-plot")
    assert len(charts) == 4
    for traces in charts:
        assert sorted(t["name"] for t in traces) == ["eta 0.01", "eta 0.1"], traces
        assert all(t["points"] == STEPS and t["drawn"] == STEPS for t in traces), traces
    expect(page.locator(".cmp-chart figcaption")).to_have_text(list(KEYS))

    table = page.locator("table.metrics-table")
    expect(table.locator("thead th")).to_have_text(["Run", *KEYS])
    expect(table.locator("tbody tr")).to_have_count(2)
    assert sorted(t.strip() for t in table.locator("tbody .mt-label a").all_inner_texts()) == ["eta 0.01", "eta 0.1"]
    expect(page.locator(".cmp-table-panel")).to_contain_text("Pick a baseline to see deltas.")
    shot("compare-no-baseline")

    # With a baseline, the other run's cells carry signed deltas, coloured by direction.
    page.get_by_label("Baseline run").select_option(label="eta 0.01")
    expect(page).to_have_url(re.compile(rf"baseline={low.pk}"))
    base_row = table.locator("tbody tr.is-baseline")
    expect(base_row).to_have_count(1)
    expect(base_row.locator(".mt-label")).to_contain_text("eta 0.01")
    expect(base_row.locator(".mt-label .badge")).to_have_text("baseline")
    expect(base_row.locator(".mt-delta")).to_have_count(0)
    other = table.locator("tbody tr:not(.is-baseline)")
    expect(other.locator(".mt-label")).to_contain_text("eta 0.1")
    deltas = other.locator(".mt-delta")
    expect(deltas).to_have_count(len(KEYS))
    # accuracies and reward are 0.05 higher (better: green); entropy is 0.09 higher (neutral: uncoloured)
    expect(deltas).to_have_text(["+0.05", "+0.05", "+0.05", "+0.09"])
    expect(other.locator(".mt-delta.delta-pos")).to_have_count(3)
    expect(other.locator(".mt-delta.delta-flat")).to_have_count(1)
    expect(page.locator(".cmp-table-panel")).to_contain_text("Δ vs")
    shot("compare-with-baseline")
