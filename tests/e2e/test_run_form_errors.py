"""The new-run form: invalid values come back as errors next to their fields, and nothing is launched."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login
from webapp.models import Run

pytestmark = pytest.mark.e2e


def _field(page: Page, name: str) -> Locator:
    """The form row (label, input, help, errors) of a config field."""
    return page.locator(".run-field").filter(has=page.locator(f"#id_{name}"))


def _submit(page: Page, browser_log: BrowserLog, project: Any, **values: str) -> None:
    browser_log.allow(r"status of 400")  # an invalid form comes back with HTTP 400, by design
    page.goto(f"/projects/{project.pk}/runs/new/")
    for name, value in values.items():
        page.locator(f"#id_{name}").fill(value)
    page.get_by_role("button", name="Launch run").click()
    expect(page.get_by_text("Nothing was launched")).to_be_visible()
    assert page.url.endswith(f"/projects/{project.pk}/runs/new/")


def test_an_out_of_range_alpha_is_reported_next_to_its_field_and_no_run_is_created(
    page: Page,
    browser_log: BrowserLog,
    shot: Callable[[str], Any],
    project: Any,
    alice: Any,
) -> None:
    login(page, alice)
    _submit(page, browser_log, project, alpha="1.5")

    alpha = _field(page, "alpha")
    expect(alpha).to_have_class(re.compile(r"\bfield-error\b"))
    expect(alpha.locator(".errorlist")).to_have_text("must be in [0.0, 1.0], got 1.5")
    expect(page.locator("#id_alpha")).to_have_value("1.5")  # what was typed is kept
    expect(page.locator(".run-field.field-error")).to_have_count(1)  # no other field is blamed
    shot("alpha-error")
    assert Run.objects.count() == 0


def test_an_invalid_alpha_and_an_invalid_kappa_are_both_reported_at_once_and_no_run_is_created(
    page: Page,
    browser_log: BrowserLog,
    shot: Callable[[str], Any],
    project: Any,
    alice: Any,
) -> None:
    login(page, alice)
    _submit(page, browser_log, project, alpha="1.5", kappa="-1")
    shot("alpha-and-kappa-errors")

    expect(_field(page, "alpha").locator(".errorlist")).to_have_text("must be in [0.0, 1.0], got 1.5")
    expect(page.locator("#id_kappa")).to_have_value("-1")
    assert Run.objects.count() == 0
    expect(_field(page, "kappa").locator(".errorlist")).to_have_text("must be ≥ 0, got -1.0", timeout=2_000)
    expect(page.locator(".run-field.field-error")).to_have_count(2)
