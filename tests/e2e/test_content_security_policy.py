"""The Content-Security-Policy as Chromium enforces it: a script injected into a page does not run.

Every other browser test serves the same policy, and any violation is a console error that fails it, so
the charts (plotly from static files) and every page script are checked under the policy there."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login

pytestmark = pytest.mark.e2e


def test_an_injected_inline_script_is_blocked(page: Page, browser_log: BrowserLog, bob: Any, project: Any) -> None:
    browser_log.allow(r"Content Security Policy")  # the violation this test provokes on purpose
    login(page, bob)
    page.goto(f"/projects/{project.pk}/runs/")
    ran = page.evaluate(
        """() => { window.injected = false; const s = document.createElement('script');
        s.textContent = 'window.injected = true'; document.body.appendChild(s); return window.injected; }"""
    )
    assert ran is False
    assert any("Content Security Policy" in e for e in browser_log.errors)
