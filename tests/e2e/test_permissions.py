"""Permissions as a browser sees them: controls a role may not use are absent, and the URLs refuse anyway."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login, logout

pytestmark = pytest.mark.e2e


def test_a_viewer_sees_no_launch_or_cancel_controls_and_an_outsider_cannot_open_the_run(
    page: Page,
    browser_log: BrowserLog,
    shot: Callable[[str], Any],
    make_run: Callable[..., Any],
    project: Any,
    bob: Any,
    vera: Any,
    eve: Any,
) -> None:
    run = make_run(name="running lab run", status="running", steps=10)
    browser_log.allow(r"status of 40[34]")  # the deliberate 403 and 404 pages below

    # Control: a member sees the controls the viewer must not see.
    login(page, bob)
    page.goto(f"/projects/{project.pk}/runs/")
    expect(page.get_by_role("link", name="New run")).to_be_visible()
    page.goto(f"/runs/{run.pk}/")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()
    logout(page)

    login(page, vera)
    page.goto(f"/projects/{project.pk}/runs/")
    expect(page.get_by_role("link", name="running lab run")).to_be_visible()
    expect(page.get_by_role("link", name="New run")).to_have_count(0)
    expect(page.get_by_role("link", name="New grid")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel selected")).to_have_count(0)
    shot("viewer-runs-list")

    page.get_by_role("link", name="running lab run").click()
    expect(page.locator("#run-header .badge").first).to_have_text("Running")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Clone")).to_have_count(0)
    expect(page.locator(".comment-form")).to_have_count(0)
    expect(page.get_by_text("Read-only access")).to_be_visible()
    shot("viewer-run-page")

    response = page.goto(f"/projects/{project.pk}/runs/new/")
    assert response is not None and response.status == 403
    shot("viewer-new-run-403")
    response = page.goto(f"/projects/{project.pk}/grid/")
    assert response is not None and response.status == 403
    page.goto("/")  # the bare error page has no navigation
    logout(page)

    login(page, eve)
    for url in (f"/runs/{run.pk}/", f"/runs/{run.pk}/side-by-side/", f"/projects/{project.pk}/runs/"):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
        expect(page.get_by_text("running lab run")).to_have_count(0)
    shot("outsider-run-404")
