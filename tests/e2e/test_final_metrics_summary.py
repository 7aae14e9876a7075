"""A study's final metrics name their summary, and a member switches it in the browser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from webapp.models import MetricPoint, Run, Study

pytestmark = pytest.mark.e2e

# A GRPO run at 0.25 for four steps that logs one noisy 0 at the last: its last value says 0.
CURVES = {"grpo": [0.25, 0.25, 0.25, 0.25, 0.0], "policy_split": [0.2, 0.3, 0.3, 0.4, 0.4]}


def test_a_member_reads_the_mean_of_the_last_steps_and_switches_to_the_last_value(
    page: Page, shot: Callable[[str], Any], make_run: Callable[..., Run], project: Any, alice: Any, bob: Any
) -> None:
    study = Study.objects.create(
        project=project, name="ps vs grpo", factors={"algorithm": list(CURVES)}, created_by=alice
    )
    for algorithm, values in CURVES.items():
        run = make_run(name=algorithm, algorithm=algorithm, status="succeeded", steps=len(values))
        run.study, run.summary, run.step = study, {"normal/accuracy": values[-1]}, len(values)
        run.save()
        MetricPoint.objects.bulk_create(
            MetricPoint(run=run, key="normal/accuracy", step=i + 1, value=v) for i, v in enumerate(values)
        )

    login(page, bob)
    page.goto(f"/studies/{study.pk}/?keys=normal/accuracy")
    table = page.locator(".cmp-table-panel")
    expect(table.get_by_role("heading", level=2)).to_have_text(
        "Final metrics (mean of the last 5 logged steps of each run)"
    )
    expect(table.locator("tbody tr", has_text="GRPO").locator("td.num .mt-value")).to_have_text("0.2")
    shot("mean-of-last-5")

    table.get_by_role("link", name="Last logged value").click()
    expect(table.get_by_role("heading", level=2)).to_have_text("Final metrics (last logged value of each run)")
    expect(table.locator("tbody tr", has_text="GRPO").locator("td.num .mt-value")).to_have_text("0")

    table.get_by_role("spinbutton", name="k").fill("2")
    table.get_by_role("button", name="Save").click()
    expect(page.locator(".cmp-table-panel").get_by_role("heading", level=2)).to_have_text(
        "Final metrics (mean of the last 2 logged steps of each run)"
    )
    study.refresh_from_db()
    assert (study.summary_kind, study.summary_k) == ("mean_last", 2)
    shot("saved-mean-of-last-2")
