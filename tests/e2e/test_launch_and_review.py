"""The main journey: log in, launch a run, watch it train live, read it side by side, review it.

A real Celery worker process (``start_worker``) trains the tiny random model on CPU; the run
page must follow it without being reloaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login, wait_for_drawn_points
from tests.workers import WorkerProcess
from webapp.models import Run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_MS = 180_000  # worker start (imports torch) + model load + 4 tiny steps; usually ~30 s
JUST_NOW = re.compile(r"now|second|minute")

# Records every state the live header goes through, to show it changed without a reload.
WATCH_HEADER = """() => {
  window.__e2eSamePage = true;
  window.__e2eHeaderStates = [];
  const header = document.getElementById("run-header");
  const record = () => {
    const badge = header.querySelector(".badge");
    const step = header.querySelector(".run-progress-line strong");
    const state = (badge ? badge.textContent.trim() : "?") + " | " + (step ? step.textContent.trim() : "?");
    const states = window.__e2eHeaderStates;
    if (states[states.length - 1] !== state) states.push(state);
  };
  record();
  new MutationObserver(record).observe(header, {childList: true, subtree: true});
}"""


def _fill_launch_form(page: Page) -> None:
    page.get_by_label("Model:", exact=True).fill("tiny-random")
    page.get_by_label("Algorithm:", exact=True).select_option(label="Policy Split")
    page.get_by_label("Rollouts per mode (n):", exact=True).fill("2")
    page.get_by_label("Questions per step:", exact=True).fill("2")
    page.get_by_label("Mini-batches (optimizer steps):", exact=True).fill("1")
    page.get_by_label("Micro-batch size:", exact=True).fill("8")
    page.get_by_label("Max new tokens:", exact=True).fill("8")
    page.get_by_label("Steps:", exact=True).fill("4")
    page.get_by_text("Advanced", exact=True).click()  # checkpoints live under "Advanced"
    page.get_by_label("Checkpoint every:", exact=True).fill("2")
    page.get_by_label("Name:", exact=True).fill("e2e tiny split")


def test_alice_launches_a_run_watches_it_train_live_then_reviews_it_side_by_side(
    page: Page,
    shot: Callable[[str], Any],
    start_worker: Callable[[str], WorkerProcess],
    project: Any,
    alice: Any,
) -> None:
    login(page, alice)
    page.get_by_role("link", name="Entropy").click()
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="No runs yet")).to_be_visible()
    shot("runs-list-empty")

    page.get_by_role("link", name="New run").first.click()
    expect(page.get_by_role("heading", name="New run")).to_be_visible()
    _fill_launch_form(page)
    shot("new-run-form")
    page.get_by_role("button", name="Launch run").click()

    # The run page, before any worker exists: queued at step 0.
    expect(page.get_by_role("heading", name="e2e tiny split")).to_be_visible()
    run = Run.objects.get(name="e2e tiny split")
    assert page.url.endswith(f"/runs/{run.pk}/")
    assert (run.config["n"], run.config["steps"], run.config["checkpoint_every"]) == (2, 4, 2)
    header = page.locator("#run-header")
    expect(header.locator(".badge").first).to_have_text("Queued")
    expect(header).to_contain_text("step 0 / 4")
    page.evaluate(WATCH_HEADER)
    shot("run-queued")

    worker = start_worker("e2e")
    # Progress shows up live (polling), whichever state the worker has reached by then.
    expect(header.locator(".badge").first).to_have_text(re.compile("Running|Succeeded"), timeout=RUN_TIMEOUT_MS)
    shot("run-progressing")
    try:
        expect(header.locator(".badge").first).to_have_text("Succeeded", timeout=RUN_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None
    expect(header).to_contain_text("step 4 / 4")
    expect(header.locator(".run-progress span")).to_have_attribute("style", re.compile(r"width:\s*100%"))
    assert page.evaluate("window.__e2eSamePage") is True, "the run page was reloaded"
    states = page.evaluate("window.__e2eHeaderStates")
    assert states[0] == "Queued | step 0 / 4" and states[-1] == "Succeeded | step 4 / 4", states
    expect(page.locator("#live-indicator")).to_have_text("")  # polling stopped
    # The checkpoints panel follows the run live too (every 2 steps, and the final one).
    expect(page.locator("#run-checkpoints tbody tr")).to_have_count(2)

    # Charts: every chart is a plotly plot with traces, and the points that arrived live are drawn.
    charts = wait_for_drawn_points(page, "#run-charts .chart", trace="mean reward", points=4)
    assert len(charts) >= 8 and all(traces for traces in charts), charts
    assert page.locator("#run-charts .js-plotly-plot").count() == len(charts)
    assert {t["name"] for t in charts[0]} >= {"normal accuracy", "HE accuracy", "mean reward"}
    shot("run-succeeded")

    # Side by side: normal mode on the left, HE on the right, both with responses.
    page.get_by_role("link", name="Side-by-side").click()
    expect(page.get_by_role("heading", name="Side by side")).to_be_visible()
    for side, label in (("a", "Normal mode"), ("b", "High-entropy mode")):
        column = page.locator(f".sbs-col.side-{side}")
        expect(column.locator(".sbs-col-head")).to_contain_text(label)
        expect(column.locator(".sample-card").first).to_be_visible()
        expect(column.locator(".sample-card .response").first).to_be_attached()
    tokens = page.locator(".sbs-col .resp-heat .tok")
    expect(tokens.first).to_be_visible()  # the heatmap is on by default
    shot("side-by-side-heatmap")

    heat = page.locator("#sbs-heat-toggle")
    heat.click()
    expect(page.locator("#sbs")).to_have_class(re.compile(r"\bheat-off\b"))
    expect(heat).to_have_attribute("aria-pressed", "false")
    expect(tokens.first).to_be_hidden()
    expect(page).to_have_url(re.compile(r"heat=0"))  # the permalink keeps the choice
    page.reload()  # served without the heatmap: the script must build it from the token data
    expect(page.locator(".resp-heat")).to_have_count(0)
    expect(page.locator(".sbs-col .resp-plain").first).to_be_visible()
    shot("side-by-side-plain")
    heat.click()
    expect(heat).to_have_attribute("aria-pressed", "true")
    expect(tokens.first).to_be_visible()
    assert tokens.count() >= 4
    assert re.fullmatch(r"\d+\.\d\d nats", tokens.first.get_attribute("title") or "")

    # A verdict on a sample, straight from its card.
    card = page.locator(".sbs-col.side-b .sample-card").first
    card_id = card.get_attribute("id")
    card.get_by_role("button", name="✓").click()
    card = page.locator(f"#{card_id}")
    expect(card.locator(".vbtn-approve")).to_have_class(re.compile(r"\bis-mine\b"))
    shot("side-by-side-sample-approved")

    # A Markdown comment on that sample, on its own page.
    card.locator(".sample-comments").click()
    expect(page.get_by_role("heading", name=re.compile(r"High-entropy mode #\d"))).to_be_visible()
    page.get_by_label("Comment", exact=True).fill("The **HE** answer repeats `8 tokens`.\n\n- one\n- two")
    page.get_by_role("button", name="Comment", exact=True).click()
    comment = page.locator(".comment").last
    expect(comment.locator(".comment-meta strong")).to_have_text("alice")
    expect(comment.locator("time")).to_have_text(JUST_NOW)
    expect(comment.locator(".comment-body strong")).to_have_text("HE")
    expect(comment.locator(".comment-body code")).to_have_text("8 tokens")
    expect(comment.locator(".comment-body li")).to_have_count(2)
    expect(page.locator(".verdict-list")).to_contain_text("Approve")
    shot("sample-commented")

    # A Markdown comment and a verdict with a note on the run itself.
    page.get_by_role("link", name="e2e tiny split").first.click()
    expect(page.get_by_role("heading", name="e2e tiny split")).to_be_visible()
    review = page.locator("#review")
    review.get_by_label("Comment", exact=True).fill("Looks *healthy*; see [the docs](https://example.org/).")
    review.get_by_role("button", name="Comment", exact=True).click()
    comment = page.locator("#review .comment").last
    expect(comment.locator(".comment-meta strong")).to_have_text("alice")
    expect(comment.locator("time")).to_have_text(JUST_NOW)
    expect(comment.locator(".comment-body em")).to_have_text("healthy")
    expect(comment.get_by_role("link", name="the docs")).to_have_attribute("href", "https://example.org/")

    review = page.locator("#review")
    review.get_by_label("Verdict note").fill("ship it after one more seed")
    review.get_by_role("button", name="Needs work").click()
    verdicts = page.locator("#review .verdict-list li")
    expect(verdicts).to_have_count(1)
    expect(verdicts.first.locator(".badge")).to_have_text("Needs work")
    expect(verdicts.first.locator("strong")).to_have_text("alice")
    expect(verdicts.first.locator("time")).to_have_text(JUST_NOW)
    expect(verdicts.first).to_contain_text("ship it after one more seed")
    expect(page.locator("#review .review-summary")).to_contain_text("1 needs work")
    expect(page.locator("#review .review-summary")).to_contain_text("1 comment")
    shot("run-reviewed")
