"""The researcher's day in the browser, on a real worker: a queue to steer (priority, reorder,
position and estimated start), the trainer's own output in the log panel (a crash's traceback
included, filtered by level, downloadable), and the System panel's CPU and memory charts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.e2e.helpers import login, plot_traces
from tests.webapp.test_execution import _config
from tests.webapp.test_execution_logs import broken_dataset
from tests.workers import WorkerProcess
from webapp.models import Run, Worker
from webapp.services import run_create

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN_TIMEOUT_MS = 180_000


def test_alice_reads_the_trainers_output_a_crash_and_the_system_charts_on_the_run_page(
    page: Page,
    shot: Callable[[str], Any],
    start_worker: Callable[[str], WorkerProcess],
    project: Any,
    alice: Any,
    tmp_path: Path,
) -> None:
    broken = broken_dataset(tmp_path.name)
    good = run_create(project=project, user=alice, config=_config(steps=4), name="healthy run", priority="high")
    crashing = _config(steps=2, task=f"data:{broken.name}")
    crash = run_create(project=project, user=alice, config=crashing, name="crashing run")
    login(page, alice)
    worker = start_worker("e2e-logs")

    # The healthy run: a line per step from the trainer's stdout, live in the log panel.
    page.goto(f"/runs/{good.pk}/")
    header = page.locator("#run-header")
    try:
        expect(header.locator(".badge").first).to_have_text("Succeeded", timeout=RUN_TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None
    logs = page.locator("#run-logs")
    expect(logs.locator(".log-line", has_text=re.compile(r"step 4/4 \(\d+\.\d s\) reward="))).to_be_visible()
    expect(logs.locator(".log-source", has_text="out").first).to_be_visible()

    # Its System panel, collapsed until opened: the trainer's CPU and memory over seconds of training.
    system = page.locator("#system-panel")
    expect(system.locator("#system-charts")).to_be_hidden()
    system.locator("summary").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#system-charts .chart')]"
        ".every(el => (el.data || []).some(t => t.x.length >= 3))",
        timeout=30_000,
    )
    traces = plot_traces(page, "#system-charts .chart")
    assert [t["name"] for t in traces[0]] == ["trainer", "host (100 = all cores)"], traces
    assert page.locator("#chart-sys-cpu .xtitle").text_content() == "seconds of training"
    system.scroll_into_view_if_needed()
    shot("system-panel")

    # The crash: its traceback as one error entry, and as the run's error.
    page.goto(f"/runs/{crash.pk}/")
    expect(header.locator(".badge").first).to_have_text("Failed", timeout=RUN_TIMEOUT_MS)
    traceback = logs.locator(".log-error", has_text="Traceback (most recent call last):")
    expect(traceback).to_have_count(1)
    expect(traceback).to_contain_text("row 2: invalid JSON")
    expect(traceback).to_contain_text('File "')
    expect(page.locator(".run-error pre")).to_contain_text("Traceback (most recent call last):")
    shot("crash-traceback")

    # Only errors: the info lines go, the traceback stays, and the download follows the filter.
    info_lines = logs.locator(".log-info")
    assert info_lines.count() > 0
    page.get_by_label("Show log lines at this level and above").select_option("error")
    expect(info_lines).to_have_count(0)
    expect(traceback).to_have_count(1)
    download = page.locator("#log-download")
    expect(download).to_have_attribute("href", f"/runs/{crash.pk}/logs/?level=error")
    text = page.request.get(download.get_attribute("href") or "").text()
    assert "Traceback (most recent call last):" in text and " INFO " not in text
    shot("crash-errors-only")


def test_bob_steers_the_queue_by_priority_and_order_and_sees_each_runs_place(
    page: Page,
    shot: Callable[[str], Any],
    start_worker: Callable[[str], WorkerProcess],
    project: Any,
    bob: Any,
    other_project: Any,
    eve: Any,
) -> None:
    for name in ("first", "second", "third"):
        run_create(project=project, user=bob, config=_config(steps=3), name=name)
    run_create(project=other_project, user=eve, config=_config(steps=3), name="eve's secret")
    # A worker of the pool that has been seen lately, and a step time to estimate starts from.
    Worker.objects.create(name="cpu@somewhere", hostname="somewhere", queues=["cpu"], last_seen_at=timezone.now())
    done = run_create(project=project, user=bob, config=_config(steps=3), name="yesterday", enqueue=False)
    Run.objects.filter(pk=done.pk).update(status="succeeded", started_at=timezone.now(), summary={"timing/step_s": 20})
    login(page, bob)

    page.get_by_role("link", name="Queues").click()
    expect(page.get_by_role("heading", name="Queue: cpu")).to_be_visible()
    rows = page.locator("#queue-table tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(3)).to_contain_text("a run of another team")
    assert "eve's secret" not in page.content()
    expect(rows.nth(0).locator(".queue-starts")).to_have_text("starts on the next free worker")
    expect(rows.nth(1).locator(".queue-starts")).to_have_text("starts in ~1m 00s")  # 3 steps × 20 s
    shot("queue-fifo")

    # "third" raised to high jumps the queue; "second" moved up passes "first".
    page.get_by_label("Priority of third").select_option("high")
    expect(rows.nth(0)).to_contain_text("third")
    page.get_by_role("button", name="Move second up").click()
    expect(rows.nth(1)).to_contain_text("second")
    names = [rows.nth(i).locator("td").nth(1).inner_text().split("\n")[0] for i in range(3)]
    assert [n.split(" Entropy")[0] for n in names] == ["third", "second", "first"], names
    shot("queue-steered")

    # The run page says where a queued run stands and lets bob change its priority there too.
    page.get_by_role("link", name="first").click()
    place = page.locator(".run-queue-place")
    expect(place).to_contain_text("position 3")
    expect(place).to_contain_text("starts in ~2m 00s")
    shot("run-queued-place")

    # A worker now takes the runs in that order.
    worker = start_worker("e2e-queue")
    mine = Run.objects.filter(project=project).exclude(name="yesterday")

    def all_started() -> bool:
        return not mine.filter(started_at=None).exists()

    deadline = timezone.now().timestamp() + RUN_TIMEOUT_MS / 1000
    while not all_started():
        assert timezone.now().timestamp() < deadline, f"the runs never all started\n{worker.output()}"
        page.wait_for_timeout(500)
    assert list(mine.order_by("started_at").values_list("name", flat=True)) == ["third", "second", "first"]
    page.goto("/queues/cpu/")
    expect(page.locator(".queue-running tbody tr").first).to_be_visible()
    shot("queue-served")
