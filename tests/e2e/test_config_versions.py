"""A run stored by an older version of the app (a renamed field, a field since removed) still clones
and resumes: the form and the run say what was migrated, and a real worker trains the migrated config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from tests.workers import WorkerProcess
from webapp.models import Run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_MS = 180_000


def _old_schema_run(make_run: Callable[..., Any]) -> Run:
    """A failed GRPO run as an older version stored it: mini_batch_size (rows) and a removed warmup_ratio."""
    run = make_run(
        name="from last year",
        status="failed",
        algorithm="grpo",
        n=2,
        questions_per_step=2,
        max_new_tokens=8,
        steps=2,
        checkpoint_every=0,
        samples_per_step=1,
    )
    legacy = {k: v for k, v in run.config.items() if k not in ("mini_batches", "schema_version")}
    run.config = {**legacy, "mini_batch_size": 2, "warmup_ratio": 0.1}
    run.error = "the worker's host was retired"
    run.save(update_fields=["config", "error"])
    return run


def test_a_run_of_an_older_schema_clones_with_a_notice_and_resumes_on_a_real_worker(
    page: Page,
    shot: Callable[[str], Any],
    start_worker: Callable[[str], WorkerProcess],
    make_run: Callable[..., Any],
    alice: Any,
) -> None:
    run = _old_schema_run(make_run)
    login(page, alice)
    page.goto(run.get_absolute_url())
    page.get_by_role("link", name="Clone", exact=True).click()
    expect(page.get_by_role("heading", name="New run")).to_be_visible()
    notices = page.get_by_test_id("config-notices")
    expect(notices).to_contain_text("mini_batch_size=2 became mini_batches=2")
    expect(notices).to_contain_text("warmup_ratio=0.1 dropped: not a field of this version")
    expect(page.get_by_label("Mini-batches (optimizer steps):", exact=True)).to_have_value("2")
    shot("clone-form-notice")

    page.go_back()
    page.get_by_role("button", name="Resume from the start").click()
    expect(page.locator(".messages")).to_contain_text("Its stored config was migrated to this version")
    shot("resume-notice")
    worker = start_worker("e2e")
    header = page.locator("#run-header")
    try:
        expect(header.locator(".badge").first).to_have_text("Succeeded", timeout=RUN_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None
    run.refresh_from_db()
    assert run.config["mini_batches"] == 2 and "warmup_ratio" not in run.config
    page.reload()
    expect(page.locator(".log-line.log-warning").first).to_contain_text("stored config migrated")
    shot("resumed-run-succeeded")
