"""The Content-Security-Policy as Chromium enforces it: an injected script or inline style does not apply, and
every page of the app, charts included, runs under the policy without a single violation.

Every other browser test serves the same policy, and any violation is a console error that fails it; the
walk below also listens for the ``securitypolicyviolation`` events themselves, page by page."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login
from tests.e2e.test_compare import _finished_run
from tests.e2e.test_evaluations import FIXTURES, _evaluated_run
from tests.e2e.test_layout import _sample
from webapp.datasets import dataset_upload
from webapp.models import Run, Study

pytestmark = pytest.mark.e2e

# Every violation a page reports, as its own event (an init script runs before any page script, CSP-exempt).
RECORD_VIOLATIONS = """window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", e => window.__cspViolations.push(
  `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}: ${e.sample}`));"""
# Violation events are queued as tasks: read the list once the ones already queued have been dispatched.
VIOLATIONS = "() => new Promise(done => setTimeout(() => done(window.__cspViolations), 50))"
# plotly's own CSS (inserted into static/css/plotly.css's sheet) is in force: it stacks the SVG layers.
PLOTLY_CSS = """() => ({
  rules: document.getElementById("plotly.js-style-global").sheet.cssRules.length,
  positions: [...document.querySelectorAll(".js-plotly-plot .main-svg")].map(s => getComputedStyle(s).position),
})"""


def _violations(page: Page) -> list[str]:
    return page.evaluate(VIOLATIONS)


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


def test_an_injected_style_element_or_attribute_is_refused_and_reported(
    page: Page, browser_log: BrowserLog, bob: Any, project: Any
) -> None:
    browser_log.allow(r"Content Security Policy")  # the violations this test provokes on purpose
    page.add_init_script(RECORD_VIOLATIONS)
    login(page, bob)
    page.goto(f"/projects/{project.pk}/runs/")
    assert _violations(page) == []
    colours = page.evaluate(
        """() => {
          const s = document.createElement('style'); s.textContent = 'main { color: rgb(255, 0, 0) }';
          document.head.appendChild(s);
          const h = document.querySelector('h1'); h.setAttribute('style', 'color: rgb(0, 0, 255)');
          return [getComputedStyle(document.querySelector('main')).color, getComputedStyle(h).color];
        }"""
    )
    assert "rgb(255, 0, 0)" not in colours and "rgb(0, 0, 255)" not in colours
    assert [v.split(" ")[0] for v in _violations(page)] == ["style-src-elem", "style-src-attr"]
    # What the policy still allows: styles set through the CSSOM, as app.js and plotly do.
    assert (
        page.evaluate(
            "() => { const h = document.querySelector('h1'); h.style.color = 'rgb(0, 128, 0)'; "
            "return getComputedStyle(h).color; }"
        )
        == "rgb(0, 128, 0)"
    )


def test_every_page_and_chart_renders_under_a_policy_without_inline_styles(
    page: Page, make_run: Any, project: Any, alice: Any, tmp_path: Path, settings: Any
) -> None:
    settings.PSL_DATA_DIR = FIXTURES  # the evaluated run's benchmarks (as in test_evaluations)
    settings.JUDGE_API_URL = ""
    low = _finished_run(make_run, "eta 0.01", eta=0.01, lift=0.0)
    high = _finished_run(make_run, "eta 0.1", eta=0.1, lift=0.05)
    study = Study.objects.create(project=project, name="eta sweep", factors={"eta": [0.01, 0.1]}, created_by=alice)
    Run.objects.filter(pk__in=[low.pk, high.pk]).update(study=study)
    sample = _sample(low, "normal", [0.2, 1.5, 4.0, 7.5])
    _sample(low, "he", [0.4, 2.5, 5.0, 9.0])
    evaluated = _evaluated_run(make_run, tmp_path, alice)
    evaluation = evaluated.evaluations.order_by("pk").first()
    assert evaluation is not None
    rows = b'{"question": "What is 2 + 3?", "answer": "5"}\n'
    dataset = dataset_upload(
        team=project.team, actor=alice, name="adds", upload=io.BytesIO(rows), filename="adds.jsonl"
    )
    p, t = project.pk, project.team_id
    pages_without_charts = [
        "/",
        f"/projects/{p}/runs/",
        f"/projects/{p}/runs/?status=succeeded",
        f"/projects/{p}/runs/new/",
        f"/projects/{p}/grid/",
        f"/runs/{low.pk}/side-by-side/",
        f"/samples/{sample.pk}/",
        f"/runs/{evaluated.pk}/evaluations/{evaluation.pk}/",
        f"/projects/{p}/studies/",
        f"/projects/{p}/activity/",
        "/teams/",
        f"/teams/{t}/",
        f"/teams/{t}/datasets/",
        f"/teams/{t}/datasets/{dataset.pk}/",
        "/tokens/",
        "/workers/",
        "/queues/",
        "/queues/cpu/",
        "/account/password/",
    ]
    pages_with_charts = [
        f"/runs/{low.pk}/",
        f"/projects/{p}/runs/compare/?run={low.pk}&run={high.pk}",
        f"/studies/{study.pk}/",
        f"/runs/{evaluated.pk}/evaluations/",
    ]
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto("/login/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert policy == django_settings.CONTENT_SECURITY_POLICY
    assert "style-src 'self';" in policy and "unsafe" not in policy
    assert _violations(page) == [], "/login/"
    login(page, alice)

    seen: dict[str, list[str]] = {}
    for url in pages_without_charts:
        page.goto(url)
        expect(page.locator("main.page")).to_be_visible()
        seen[url] = _violations(page)
    for url in pages_with_charts:
        page.goto(url)
        charts = page.locator(".js-plotly-plot")
        expect(charts.first.locator(".main-svg").first).to_be_attached()
        page.wait_for_load_state("networkidle")  # every chart of the page drawn (their data comes by fetch)
        charts.first.locator(".nsewdrag").first.hover()  # hover labels are drawn text too
        expect(page.locator(".hoverlayer > *").first).to_be_attached()
        css = page.evaluate(PLOTLY_CSS)
        assert css["rules"] > 50 and set(css["positions"]) == {"absolute"}, (url, css)
        # The modebar's PNG export: plotly serialises the chart into an image.
        png = page.evaluate("() => Plotly.toImage(document.querySelector('.js-plotly-plot'), {format: 'png'})")
        assert re.match(r"data:image/png;base64,", png), url
        seen[url] = _violations(page)
    failing = [f"{url}: {v}" for url, violations in seen.items() for v in violations]
    assert not failing, "pages that broke the policy:\n" + "\n".join(failing)
