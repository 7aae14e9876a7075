"""Random search spaces and successive halving: pure, seeded, and strict about malformed input."""

from __future__ import annotations

import pytest

from trainer.search import (
    Distribution,
    Halving,
    SearchError,
    halving_cutoff,
    halving_stops,
    parse_distribution,
    sample_space,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uniform(0.01, 0.1)", Distribution("uniform", (0.01, 0.1))),
        ("loguniform(1e-6, 1e-4)", Distribution("loguniform", (1e-6, 1e-4))),
        ("randint(2, 8)", Distribution("randint", (2, 8))),
        ("choice(true, false)", Distribution("choice", (True, False))),
        ("0.5, 1, 2", Distribution("choice", (0.5, 1, 2))),
    ],
)
def test_it_reads_each_kind_of_distribution(text: str, expected: Distribution) -> None:
    assert parse_distribution(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("normal(0, 1)", "unknown distribution 'normal'"),
        ("uniform(1)", "uniform needs two numbers"),
        ("uniform(0.2, 0.1)", "low must be below high"),
        ("loguniform(0, 1)", "loguniform needs low > 0"),
        ("randint(1.5, 4)", "randint needs two integers"),
        ("choice()", "choice needs at least one value"),
    ],
)
def test_it_rejects_malformed_distributions_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        parse_distribution(text)


def test_samples_stay_in_range_and_are_reproducible_from_the_seed() -> None:
    space = {
        "lr": parse_distribution("loguniform(1e-6, 1e-4)"),
        "eta": parse_distribution("uniform(0.01, 0.1)"),
        "n": parse_distribution("randint(2, 4)"),
    }
    points = sample_space(space, 50, seed=7)
    assert len(points) == 50 and list(points[0]) == ["lr", "eta", "n"]
    assert all(1e-6 <= p["lr"] <= 1e-4 and 0.01 <= p["eta"] <= 0.1 and p["n"] in (2, 3, 4) for p in points)
    assert {p["n"] for p in points} == {2, 3, 4}
    assert sum(p["lr"] < 1e-5 for p in points) > 15  # log-uniform: half the draws in the lower decade
    assert sample_space(space, 50, seed=7) == points and sample_space(space, 50, seed=8) != points


def test_a_small_discrete_space_gives_each_point_once() -> None:
    space = {"kappa": parse_distribution("choice(1, 2)"), "rollout_sharing": parse_distribution("true, false")}
    assert len(sample_space(space, 10, seed=0)) == 4


def test_the_first_run_at_a_rung_always_continues() -> None:
    assert halving_cutoff([], reduction=2, mode="max") is None
    assert halving_stops(-5.0, [], reduction=2, mode="max") == (False, None)


def test_a_run_worse_than_the_best_half_before_it_is_stopped() -> None:
    recorded = [0.1, 0.4, 0.3, 0.2]  # the best half: 0.4 and 0.3, so the cutoff is 0.3
    assert halving_stops(0.25, recorded, reduction=2, mode="max") == (True, 0.3)
    assert halving_stops(0.3, recorded, reduction=2, mode="max") == (False, 0.3)
    assert halving_stops(0.35, recorded, reduction=2, mode="min") == (True, 0.2)  # lower is better
    assert halving_stops(float("nan"), recorded, reduction=2, mode="max")[0] is True


def test_halving_settings_are_validated() -> None:
    assert Halving("train/reward", (2, 4)).to_dict() == {
        "metric": "train/reward",
        "rungs": [2, 4],
        "mode": "max",
        "reduction": 2,
    }
    assert Halving.from_dict(Halving("x", (1,), "min", 3).to_dict()) == Halving("x", (1,), "min", 3)
    for bad in ({"rungs": (4, 2)}, {"rungs": ()}, {"mode": "best"}, {"reduction": 1}, {"metric": " "}):
        with pytest.raises(SearchError):
            Halving(**{"metric": "train/reward", "rungs": (2,), **bad})  # type: ignore[arg-type]
