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


def _train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--no-progress", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("broken.yaml", "steps: [1, 2\nmodel: tiny-random\n", "broken.yaml is not valid YAML"),
        ("broken.json", '{"steps": 2,', "broken.json is not valid JSON"),
        ("binary.yaml", None, "cannot read"),
        ("list.yaml", "- steps\n- 2\n", "must hold a mapping"),
    ],
)
def test_a_bad_config_file_is_a_one_line_error(tmp_path: Path, name: str, text: str | None, expected: str) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b"\xff\xfe\x00not text")
    else:
        path.write_text(text)
    line = _one_line_error(_train("--config", str(path), "--set", f"output_dir={tmp_path / 'out'}"))
    assert expected in line and "config" in line


def test_a_missing_or_folder_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    assert "No such file" in _one_line_error(_train("--config", str(tmp_path / "absent.yaml")))
    assert "Is a directory" in _one_line_error(_train("--config", str(tmp_path)))


def test_an_unwritable_output_folder_is_a_one_line_error_before_any_model_loads(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")  # unwritable as a folder, even for root
    line = _one_line_error(_train("--set", "model=tiny-random", "--set", f"output_dir={blocker / 'run'}"))
    assert "output_dir" in line and "cannot write" in line
    events = _train("--set", f"output_dir={tmp_path / 'ok'}", "--events", str(blocker / "events.jsonl"))
    assert "--events" in _one_line_error(events)


def test_plan_with_a_broken_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("steps: [1, 2\n")
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "plan", "--config", str(tmp_path / "broken.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "not valid YAML" in _one_line_error(out)
