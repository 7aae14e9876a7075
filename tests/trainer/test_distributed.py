"""Data parallel training under torchrun, on CPU with the gloo backend and two processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_it_trains_with_two_processes_and_only_rank_zero_reports(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "trainer",
            "train",
            "--no-progress",
            "--events",
            str(events),
            "--set",
            "model=tiny-random",
            "--set",
            "steps=2",
            "--set",
            "n=2",
            "--set",
            "questions_per_step=2",
            "--set",
            "mini_batch_size=8",
            "--set",
            "micro_batch_size=8",
            "--set",
            "max_new_tokens=8",
            "--set",
            "samples_per_step=1",
            "--set",
            "checkpoint_every=0",
            "--set",
            f"output_dir={tmp_path / 'out'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PSL_TORCH_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert kinds.count("metrics") == 2  # one per step: rank 1 writes nothing
    assert kinds.count("samples") == 2
    logs = [json.loads(line)["message"] for line in events.read_text().splitlines() if '"log"' in line]
    assert "data parallel over 2 processes (cpu)" in logs
    assert (tmp_path / "out" / "checkpoints" / "step_000002" / "model.safetensors").is_file()
