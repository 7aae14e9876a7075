"""The memory planner against measured peaks: trainer.memprobe runs the engine's own scoring pass and
PPO update on worst-case rows and reads the live-tensor peak (CPU: the profiler's allocation events).
The planner's CPU estimate (no CUDA-only terms) must be within 25 % of it, phase by phase. The cases
are bench/planner_validation.py's (which prints the figures; docs/results/2026-12-03-gpu-hosts.md)."""

from __future__ import annotations

import pytest

from bench.planner_validation import CASES, compare, config

TOLERANCE = 0.25


def assert_planned_within_tolerance(model: str, case: str) -> None:
    phases = compare(config(model, case))
    for phase, (planned, measured) in phases.items():
        assert abs(planned / measured - 1) <= TOLERANCE, f"{phase}: planned {planned:,} B, measured {measured:,} B"


@pytest.mark.parametrize("case", CASES["tiny-random"])
def test_the_planner_matches_tiny_randoms_measured_peaks(case: str) -> None:
    assert_planned_within_tolerance("tiny-random", case)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES["smollm2-135m"])
def test_the_planner_matches_smollm2s_measured_peaks(case: str) -> None:
    assert_planned_within_tolerance("smollm2-135m", case)
