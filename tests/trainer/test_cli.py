"""The train command on its own: what the README's example promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAIN = [sys.executable, "-m", "trainer", "train", "--preset", "ps-smollm2-demo", "--no-progress"]


@pytest.mark.slow
def test_train_writes_the_samples_of_both_modes_by_default_and_a_line_per_step(tmp_path: Path) -> None:
    out = subprocess.run(
        [*TRAIN, "--set", "model=tiny-random", "--set", "steps=2", "--set", f"output_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert out.returncode == 0, out.stderr[-3000:]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    samples = [s for e in events if e["kind"] == "samples" for s in e["samples"]]
    assert {s["mode"] for s in samples} == {"normal", "he"}
    assert all(s["response"] is not None for s in samples)
    assert [line.split()[1] for line in out.stdout.splitlines() if line.startswith("step ")] == ["1/2", "2/2"]
    assert (tmp_path / "metrics.jsonl").exists()
