"""webapp.review.stats: exact McNemar, the sign-flip permutation test and its bootstrap CI, on hand-made data."""

from __future__ import annotations

import math

import pytest

from webapp.review.stats import (
    MCNEMAR,
    PERMUTATION,
    bootstrap_ci,
    majority_correct,
    mcnemar_exact_p,
    mcnemar_test,
    paired_question_test,
    permutation_test,
    significance_mark,
)


def test_mcnemar_p_for_eight_discordant_questions_all_one_way_is_two_times_half_to_the_eighth() -> None:
    # b=0, c=8: P(X ≤ 0) for Binomial(8, ½) is 0.5^8; two-sided doubles it.
    assert mcnemar_exact_p(0, 8) == pytest.approx(2 * 0.5**8)
    assert mcnemar_exact_p(8, 0) == pytest.approx(0.0078125)


def test_mcnemar_p_matches_the_binomial_tail_by_hand() -> None:
    # b=3, c=12, n=15: 2 · (C(15,0)+C(15,1)+C(15,2)+C(15,3)) / 2^15 = 2 · 576 / 32768.
    assert mcnemar_exact_p(3, 12) == pytest.approx(2 * 576 / 2**15)


def test_mcnemar_p_is_one_without_discordant_pairs_or_when_balanced() -> None:
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 5) == 1.0  # the doubled tail exceeds 1 and is capped


def test_mcnemar_p_stays_finite_on_large_counts() -> None:
    p = mcnemar_exact_p(5000, 5300)
    assert 0 < p < 0.01


def test_mcnemar_test_counts_only_discordant_questions() -> None:
    # 10 questions: both right on 2, A only on 8 (b=8), B only on 0.
    a = [True] * 10
    b = [True, True] + [False] * 8
    result = mcnemar_test(a, b)
    assert result.test == MCNEMAR
    assert result.n == 10
    assert result.diff == pytest.approx(0.8)
    assert result.p_value == pytest.approx(2 * 0.5**8)
    assert result.ci_low < 0.8 < result.ci_high


def test_majority_needs_more_than_half_of_the_samples() -> None:
    assert majority_correct([1, 1, 0])
    assert not majority_correct([1, 0])  # a tie is not a majority
    assert not majority_correct([0.5, 0.5, 1])  # 0.5 is not a correct score


def test_identical_methods_give_p_one_and_a_zero_width_ci() -> None:
    a = [1.0, 0.0, 0.5, 0.25, 1.0, 0.75] * 10  # 60 questions: the Monte Carlo path
    result = permutation_test(a, a)
    assert result.test == PERMUTATION
    assert result.p_value == 1.0
    assert result.diff == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_identical_methods_give_p_one_on_the_exact_path_too() -> None:
    assert permutation_test([1.0, 0.0, 1.0], [1.0, 0.0, 1.0]).p_value == 1.0


def test_a_huge_consistent_difference_is_significant_at_one_percent() -> None:
    # A solves every one of 40 questions with 7/8 samples, B with 1/8.
    result = permutation_test([7 / 8] * 40, [1 / 8] * 40)
    assert result.p_value < 0.01
    assert result.diff == pytest.approx(0.75)
    assert result.mark == "‡"


def test_the_ci_covers_the_true_difference() -> None:
    # 50 questions: A is better by 0.5 on 30 of them and equal elsewhere: difference 0.3.
    a = [1.0] * 30 + [0.5] * 20
    b = [0.5] * 30 + [0.5] * 20
    result = permutation_test(a, b)
    assert result.diff == pytest.approx(0.3)
    assert result.ci_low <= 0.3 <= result.ci_high
    assert result.ci_low > 0.15 and result.ci_high < 0.45


def test_the_exact_test_enumerates_every_sign_pattern() -> None:
    # 4 questions, all +1: only "all +" and "all −" reach |mean| = 1, so p = 2/16.
    result = permutation_test([1.0] * 4, [0.0] * 4)
    assert result.p_value == pytest.approx(2 / 16)


def test_the_exact_and_monte_carlo_paths_agree() -> None:
    a = [1, 1, 0, 1, 0.5, 1, 1, 0.25, 1, 0, 1, 1]
    b = [0, 1, 0, 0, 0.5, 1, 0, 0.25, 1, 0, 0, 1]
    exact = permutation_test(a, b, exact_up_to=16)
    sampled = permutation_test(a, b, exact_up_to=0, resamples=20_000)
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.01)


def test_strata_weigh_each_benchmark_equally() -> None:
    # Benchmark x: 2 questions with difference 1; benchmark y: 8 questions with difference 0.
    a = [1.0, 1.0] + [0.0] * 8
    b = [0.0, 0.0] + [0.0] * 8
    pooled = permutation_test(a, b)
    stratified = permutation_test(a, b, strata=["x", "x"] + ["y"] * 8)
    assert pooled.diff == pytest.approx(0.2)
    assert stratified.diff == pytest.approx(0.5)  # mean of the per-benchmark means (1 and 0)


def test_bootstrap_ci_of_a_constant_difference_is_that_constant() -> None:
    assert bootstrap_ci([0.25] * 30) == pytest.approx((0.25, 0.25))


def test_paired_question_test_pairs_only_shared_questions() -> None:
    a = {("math", "q1"): 1.0, ("math", "q2"): 1.0, ("math", "only-a"): 0.0}
    b = {("math", "q1"): 0.0, ("math", "q2"): 0.0, ("math", "only-b"): 1.0}
    result = paired_question_test(a, b)
    assert result is not None and result.n == 2 and result.diff == 1.0
    assert paired_question_test({("m", "x"): 1.0}, {("m", "y"): 1.0}) is None


def test_paired_question_test_binarises_by_majority_for_mcnemar() -> None:
    a = {("m", str(i)): 0.75 for i in range(8)}  # 6/8 correct: solved
    b = {("m", str(i)): 0.25 for i in range(8)}  # 2/8 correct: not solved
    result = paired_question_test(a, b, test=MCNEMAR)
    assert result is not None
    assert result.p_value == pytest.approx(2 * 0.5**8)


def test_repeating_a_test_on_the_same_data_reuses_the_result() -> None:
    a = {("m", str(i)): i % 3 / 2 for i in range(40)}
    b = {("m", str(i)): i % 2 / 2 for i in range(40)}
    first = paired_question_test(a, b)
    assert paired_question_test(dict(a), dict(b)) is first
    assert paired_question_test(b, a) != first


def test_it_rejects_an_unknown_test_name() -> None:
    with pytest.raises(ValueError, match="unknown test"):
        paired_question_test({("m", "q"): 1.0}, {("m", "q"): 0.0}, test="t-test")


@pytest.mark.parametrize(
    ("p", "mark"), [(0.001, "‡"), (0.0099, "‡"), (0.01, "†"), (0.049, "†"), (0.05, ""), (None, "")]
)
def test_significance_marks_follow_the_legend(p: float | None, mark: str) -> None:
    assert significance_mark(p) == mark


def test_results_are_reproducible_for_a_seed() -> None:
    a = [math.sin(i) ** 2 for i in range(100)]
    b = [math.cos(i) ** 2 for i in range(100)]
    assert permutation_test(a, b, seed=3) == permutation_test(a, b, seed=3)
