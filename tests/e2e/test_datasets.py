"""Datasets in the browser: a member uploads a JSONL file on the team's Datasets page, a bad row is
shown on the field and nothing is stored, the stored questions are previewed escaped, and the run
form suggests the dataset's task name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import BrowserLog
from tests.e2e.helpers import login
from webapp.models import Dataset

pytestmark = pytest.mark.e2e


def test_a_member_uploads_a_dataset_previews_it_and_finds_it_in_the_run_form(
    page: Page,
    browser_log: BrowserLog,
    shot: Callable[[str], Any],
    team: Any,
    bob: Any,
    project: Any,
    tmp_path: Path,
) -> None:
    browser_log.allow(r"status of 400")  # the refused upload below answers 400 with the form
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1 + 1?", "answer": "2"}\n{"question": "3 + 4?"}\n')
    good = tmp_path / "sums.jsonl"
    rows = [{"question": f"{i} + 4?", "answer": str(i + 4)} for i in range(3)]
    rows.append({"question": "<img src=x onerror=alert(1)> 9 + 1?", "answer": "10"})
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))

    login(page, bob)
    page.goto(f"/teams/{team.pk}/")
    page.get_by_role("link", name="Datasets").click()
    expect(page.locator("#datasets")).to_contain_text("No dataset yet.")
    page.get_by_label("Name").fill("sums")
    page.get_by_label("File").set_input_files(str(bad))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".field-error")).to_contain_text("bad.jsonl: row 2")
    expect(page.get_by_text("Nothing was uploaded")).to_be_visible()
    shot("dataset-upload-error")
    assert not Dataset.objects.exists()

    page.get_by_label("Name").fill("sums")
    page.get_by_label("File").set_input_files(str(good))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_text("Uploaded 4 questions; runs name them data:sums.jsonl.")).to_be_visible()
    expect(page.locator("#dataset-reference")).to_have_text("data:sums.jsonl")
    preview = page.locator("#dataset-preview")
    expect(preview).to_contain_text("<img src=x onerror=alert(1)> 9 + 1?")  # shown as text, not markup
    expect(preview.locator("img")).to_have_count(0)
    shot("dataset-detail")

    page.get_by_role("link", name="All datasets").click()
    expect(page.locator("tr[data-dataset=sums]")).to_contain_text("4")
    page.goto(f"/projects/{project.pk}/runs/new/")
    options = page.locator("datalist#id_task-options option")
    assert "data:sums.jsonl" in options.evaluate_all("os => os.map(o => o.value)")
