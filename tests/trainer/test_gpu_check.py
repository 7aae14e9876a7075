"""bench/gpu_check.py --smoke: the GPU check's own code on CPU with a tiny Qwen3 shape, end to end."""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALGOS = ("policy_split", "grpo")
PHASES = ("generate", "score", "update")
KINDS = ("check", "plan", "skip", "note", "phase", "step", "summary", "ratio", "done")


def parse(line: str) -> tuple[str, dict[str, str]]:
    kind, *pairs = shlex.split(line)
    return kind, dict(pair.split("=", 1) for pair in pairs)


@pytest.fixture(scope="module")
def report() -> dict[str, list[dict[str, str]]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines: dict[str, list[dict[str, str]]] = {}
    for line in out.stdout.splitlines():
        if line.split(" ", 1)[0] in KINDS:  # libraries may print lines of their own
            kind, fields = parse(line)
            lines.setdefault(kind, []).append(fields)
    return lines


@pytest.mark.slow
def test_it_describes_the_check_it_runs(report: dict[str, list[dict[str, str]]]) -> None:
    (check,) = report["check"]
    assert check["device"] == "cpu" and check["shape"] == "qwen3-tiny"
    assert (check["dtype"], check["masters"], check["checkpointing"]) == ("bfloat16", "float32", "on")
    assert int(check["grpo_n"]) == 2 * int(check["ps_n"])  # the same number of generated sequences


@pytest.mark.slow
def test_it_reports_every_phase_of_every_step_with_sane_numbers(report: dict[str, list[dict[str, str]]]) -> None:
    steps = int(report["check"][0]["steps"])
    response = int(report["check"][0]["response_tokens"])
    for algo in ALGOS:
        phases = [p for p in report["phase"] if p["algo"] == algo]
        assert [(int(p["step"]), p["name"]) for p in phases] == [(s, n) for s in range(1, steps + 1) for n in PHASES]
        for p in phases:
            ran = p["ran"] == "yes"
            assert ran or (algo == "grpo" and p["name"] == "score")  # GRPO's scoring is fused into its update
            if not ran:
                continue
            assert float(p["seconds"]) > 0 and float(p["tokens"]) > 0
            assert float(p["tokens_per_s"]) == pytest.approx(float(p["tokens"]) / float(p["seconds"]), rel=0.01)
            assert 0 < float(p["peak_gib"]) < 4 and float(p["plan_gib"]) > 0
        for s in (s for s in report["step"] if s["algo"] == algo):
            assert int(s["mean_response_tokens"]) == response  # forced to the full length
            assert math.isfinite(float(s["loss"])) and float(s["grad_norm"]) > 0  # a real update


@pytest.mark.slow
def test_the_planner_is_within_25_percent_of_each_algorithms_measured_peak(
    report: dict[str, list[dict[str, str]]],
) -> None:
    summaries = {s["algo"]: s for s in report["summary"]}
    assert set(summaries) == set(ALGOS)
    for s in summaries.values():
        assert 0.75 <= float(s["plan_over_peak"]) <= 1.25, s
        assert float(s["step_s"]) == pytest.approx(sum(float(s[f"{p}_s"]) for p in PHASES), rel=0.25)


@pytest.mark.slow
def test_it_gives_the_policy_split_over_grpo_ratios(report: dict[str, list[dict[str, str]]]) -> None:
    (ratio,) = report["ratio"]
    assert ratio["of"] == "ps_over_grpo"
    # Policy Split trains twice GRPO's rows (4n vs 2n per question) in as many passes and scores
    # them; time on a shared CPU under the profiler, and memory, are only checked for sanity.
    assert 0.3 < float(ratio["step_time"]) < 10.0
    assert 0.8 < float(ratio["peak_memory"]) < 3.0
    assert {"generate", "update"} <= set(ratio)
