"""Browser tests: a real Chromium (Debian's, headless) drives the app served by pytest-django's ``live_server``.

* ``browser`` is one Chromium per session; every test gets its own ``page`` (a fresh context,
  1440×900, ``base_url`` = the live server, so ``page.goto("/login/")`` works).
* Any JS console error or uncaught page error fails the test at teardown (favicon 404s aside);
  a test that provokes an expected error (a 403 page) whitelists it with ``browser_log.allow``.
* ``shot("step")`` saves a full-page screenshot as ``var/screenshots/<test>-<nn>-<step>.png``
  (kept as CI artifacts); a failing test also leaves ``<test>-failed.png``.

Playwright's sync API keeps an asyncio loop running in the main thread while it is started,
which makes Django refuse ORM calls ("async context"). So the browser tests run last in a
session (``pytest_collection_modifyitems`` below), and DJANGO_ALLOW_ASYNC_UNSAFE is set exactly
while Playwright is started.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1440, "height": 900}
ACTION_TIMEOUT_MS = 15_000  # clicks, fills, locator waits
NAVIGATION_TIMEOUT_MS = 30_000

expect.set_options(timeout=ACTION_TIMEOUT_MS)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: once Playwright runs, the main thread has a running event loop until the session ends."""
    browser_tests = [item for item in items if item.get_closest_marker("e2e")]
    if browser_tests:
        items[:] = [item for item in items if not item.get_closest_marker("e2e")] + browser_tests


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)  # the page fixture screenshots failures
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS, timeout=60_000)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class BrowserLog:
    """Console errors and uncaught exceptions of a test's pages."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=lambda: [re.compile(r"favicon\.ico")])

    def allow(self, pattern: str) -> None:
        """Expect errors matching ``pattern`` (e.g. the console line of a deliberate 403)."""
        self.allowed.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            self.errors.append(f"console error: {message.text} (at {where})")

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught page error: {error}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def page(
    browser: Browser,
    browser_log: BrowserLog,
    live_server: Any,
    request: pytest.FixtureRequest,
) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    tab = context.new_page()
    tab.on("console", browser_log.on_console)
    tab.on("pageerror", browser_log.on_page_error)
    yield tab
    report = getattr(request.node, "e2e_report_call", None)
    if report is not None and report.failed:
        with contextlib.suppress(Error):  # the failure itself matters more than its picture
            tab.screenshot(path=str(_shot_path(request.node.name, "failed")), full_page=True, timeout=10_000)
    context.close()
    unexpected = browser_log.unexpected()
    assert not unexpected, "the browser reported errors:\n" + "\n".join(unexpected)


def _shot_path(test_name: str, step: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{test_name}-{step}").strip("-")
    return SCREENSHOTS / f"{safe}.png"


@pytest.fixture
def shot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """shot("runs-list") saves var/screenshots/<test>-<nn>-runs-list.png (full page), numbered in order."""
    name = request.node.name
    for old in SCREENSHOTS.glob(f"{name}-*.png"):  # a renamed step must not leave a stale picture
        old.unlink()
    counter = iter(range(1, 100))

    def take(step: str) -> Path:
        path = _shot_path(name, f"{next(counter):02d}-{step}")
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    return take
