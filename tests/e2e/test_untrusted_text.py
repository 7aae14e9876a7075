"""Untrusted text (model output, run names, comments) is shown literally and never runs in the browser.

Every payload sets ``window.__xss`` if it ever executes; the pages must leave it undefined, show
the text as typed, and keep ``javascript:`` out of every link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login
from webapp.models import Run, Sample
from webapp.services import comment_create

pytestmark = pytest.mark.e2e

RESPONSE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
TOKENS = ["<script>", "window.__xss=1", "</script>", '<img src=x onerror="window.__xss=2">']
QUESTION = 'What is <img src=x onerror="window.__xss=5"> plus 2?'
PROMPT = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
RUN_NAME = "<b>bold</b> run"
LINK_COMMENT = "See [click](javascript:window.__xss=3) and <script>window.__xss=4</script> too."
SAMPLE_COMMENT = "Raw <script>window.__xss=6</script> and [x](javascript:window.__xss=7)"


def _assert_inert(page: Page) -> None:
    """Nothing ran, no payload became an element, and no link points at javascript:."""
    assert page.evaluate("typeof window.__xss") == "undefined"
    expect(page.locator('img[src="x"]')).to_have_count(0)
    expect(page.locator('script:not([type="application/json"])', has_text="__xss")).to_have_count(0)
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if re.match(r"\s*javascript:", h, re.I)], hrefs


def _sample(run: Run, mode: str, index: int) -> Sample:
    return Sample.objects.create(
        run=run,
        step=1,
        question_id="xss-1",
        mode=mode,
        context=mode,
        index=index,
        prompt=PROMPT,
        answer="<script>window.__xss=8</script>",
        response=RESPONSE,
        reward=0.0,
        length=len(TOKENS),
        entropy=1.5,
        tokens=TOKENS,
        surprisal=[0.1, 1.0, 2.5, 7.0],
    )


def test_markup_in_run_names_samples_and_comments_is_shown_literally_and_never_executes(
    page: Page,
    shot: Callable[[str], Any],
    make_run: Callable[..., Run],
    project: Any,
    alice: Any,
) -> None:
    run = make_run(name=RUN_NAME, status="succeeded", steps=1)
    sample = _sample(run, "normal", 0)
    _sample(run, "he", 0)
    comment_create(target=sample, author=alice, body=SAMPLE_COMMENT)

    login(page, alice)
    page.goto(f"/projects/{project.pk}/runs/")
    link = page.get_by_role("link", name=RUN_NAME, exact=True)
    expect(link).to_be_visible()
    expect(page.locator(".runs-name b")).to_have_count(0)
    _assert_inert(page)
    shot("runs-list")

    # Side by side with the heatmap on: server-rendered token spans.
    page.goto(f"/runs/{run.pk}/side-by-side/")
    expect(page.locator(".sbs-crumbs")).to_contain_text(RUN_NAME)
    expect(page.locator(".sbs-question-text")).to_have_text(QUESTION)
    expect(page.locator(".sbs-answer code")).to_have_text("<script>window.__xss=8</script>")
    for side in ("a", "b"):
        tokens = page.locator(f".sbs-col.side-{side} .resp-heat .tok")
        expect(tokens).to_have_text(TOKENS)
        expect(page.locator(f".sbs-col.side-{side} .resp-plain")).to_have_text(RESPONSE)  # (hidden under the heatmap)
    page.locator(".sbs-col.side-a .sample-prompt summary").click()
    expect(page.locator(".sbs-col.side-a .turn-user pre")).to_have_text(QUESTION)
    _assert_inert(page)
    shot("side-by-side-heatmap")

    # Heatmap off, reloaded, then on again: the script builds the spans from JSON, as text.
    page.locator("#sbs-heat-toggle").click()
    expect(page.locator("#sbs")).to_have_class(re.compile(r"\bheat-off\b"))
    expect(page.locator(".sbs-col.side-a .resp-plain")).to_have_text(RESPONSE)
    page.reload()
    expect(page.locator(".resp-heat")).to_have_count(0)
    expect(page.locator(".sbs-col.side-b .resp-plain")).to_have_text(RESPONSE)
    page.locator("#sbs-heat-toggle").click()
    expect(page.locator(".sbs-col.side-b .resp-heat .tok")).to_have_text(TOKENS)
    page.locator(".sbs-col.side-b .resp-heat .tok").last.hover()  # the readout echoes the token as text
    expect(page.locator("#sbs-readout")).to_contain_text('"<img src=x onerror=\\"window.__xss=2\\">"')
    _assert_inert(page)
    shot("side-by-side-script-heatmap")

    # The sample's own page, with its comment.
    page.goto(f"/samples/{sample.pk}/")
    expect(page.locator(".sample-card .resp-heat .tok")).to_have_text(TOKENS)
    body = page.locator(".comment-body").first
    expect(body).to_contain_text("Raw <script>window.__xss=6</script> and x")
    body.get_by_text("x", exact=True).click()  # the neutered link does nothing
    _assert_inert(page)
    shot("sample-page")

    # A comment typed on the run page.
    page.goto(f"/runs/{run.pk}/")
    expect(page.get_by_role("heading", name=RUN_NAME, exact=True)).to_be_visible()
    page.locator("#review").get_by_label("Comment", exact=True).fill(LINK_COMMENT)
    page.locator("#review").get_by_role("button", name="Comment", exact=True).click()
    body = page.locator("#review .comment-body").last
    expect(body).to_have_text("See click and <script>window.__xss=4</script> too.")
    clickable = body.get_by_text("click", exact=True)
    assert (clickable.get_attribute("href") or "") == ""
    clickable.click()
    expect(page.locator("#review .comment-meta strong").last).to_have_text("alice")
    _assert_inert(page)
    shot("run-page-comment")
