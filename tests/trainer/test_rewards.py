"""Math and multiple-choice rewards (docs/method.md §6.1, §6.2): one group of cases per grading rule."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from trainer.data.rewards import (
    answers_match,
    boxed_answer,
    choice_letter,
    choice_reward,
    extract_boxed,
    extract_boxed_balanced,
    math_reward,
    normalize_mathd,
    normalize_sympy,
    run_with_time_limit,
    split_tuple,
)


def boxed(answer: str) -> str:
    return f"Let me work it out step by step.\nSo the answer is \\boxed{{{answer}}}."


# --- extraction (docs/method.md §6.1 step 2) ---------------------------------------------------------------


def test_extract_boxed_takes_the_last_match_across_lines() -> None:
    assert extract_boxed("first \\boxed{1}\nthen \\boxed{2}") == "2"


def test_extract_boxed_is_greedy_to_the_last_brace_of_the_line_like_the_released_code() -> None:
    assert extract_boxed("\\boxed{1} or \\boxed{2}") == "1} or \\boxed{2"


def test_extract_boxed_keeps_nested_braces_on_one_line() -> None:
    assert extract_boxed("so \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"


def test_extract_boxed_returns_none_without_a_box() -> None:
    assert extract_boxed("the answer is 4") is None


def test_extract_boxed_balanced_matches_braces_across_lines() -> None:
    text = "\\boxed{\\begin{pmatrix}\n1 \\\\ 2\n\\end{pmatrix}} done }"
    assert extract_boxed_balanced(text) == "\\begin{pmatrix}\n1 \\\\ 2\n\\end{pmatrix}"


def test_extract_boxed_balanced_returns_none_for_an_unclosed_box() -> None:
    assert extract_boxed_balanced("\\boxed{\\frac{1}{2}") is None


def test_the_graders_repair_two_boxes_on_one_line_with_brace_matching() -> None:
    assert boxed_answer("\\boxed{1} or \\boxed{2}") == "2"


def test_the_last_boxed_answer_wins() -> None:
    assert math_reward("\\boxed{3}\nWait, no.\n\\boxed{4}", "4") == 1.0
    assert math_reward("\\boxed{4}\nWait, no.\n\\boxed{3}", "4") == 0.0


def test_a_box_with_nested_braces_is_graded_whole() -> None:
    assert math_reward(boxed("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt3}{2}") == 1.0


# --- think gate (docs/method.md §6.1 step 1) -------------------------------------------------------------------


def test_require_think_scores_zero_without_a_closing_think_tag() -> None:
    assert math_reward("<think>2+2 is 4 \\boxed{4}", "4", require_think=True) == 0.0


def test_require_think_reads_only_the_text_after_the_last_think_tag() -> None:
    assert math_reward("<think>maybe \\boxed{5}</think> It is \\boxed{4}.", "4", require_think=True) == 1.0
    assert math_reward("<think>it is \\boxed{4}</think> The answer is 4.", "4", require_think=True) == 0.0


def test_without_require_think_a_plain_response_is_graded() -> None:
    assert math_reward("\\boxed{4}", "4") == 1.0


# --- (a) mathd normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "truth"),
    [
        ("\\frac12", "\\frac{1}{2}"),  # unbraced fraction arguments
        ("0.5", "\\frac{1}{2}"),  # the one decimal MATH rewrites
        ("\\dfrac{3}{4}", "\\frac34"),  # dfrac / tfrac are frac
        ("\\tfrac{3}{4}", "3/4"),  # a/b of integers is \frac{a}{b}
        ("\\text{(A)}", "(A)"),  # an enclosing \text{} is dropped
        ("5\\text{ cm}", "5"),  # a trailing unit after "\text{ "
        ("x = 3", "3"),  # a short "x =" prefix is dropped
        ("\\left( 1, 2 \\right)", "(1,2)"),  # \left / \right and spaces
        ("90^\\circ", "90"),  # degree signs
        ("25\\%", "25"),  # escaped percent
        ("\\sqrt3", "\\sqrt{3}"),  # unbraced square root
        (".5", "0.5"),  # a leading zero is added
    ],
)
def test_answers_equal_after_the_mathd_normalisation_match(given: str, truth: str) -> None:
    assert normalize_mathd(given) == normalize_mathd(truth)
    assert math_reward(boxed(given), truth) == 1.0


# --- (b) sympy-oriented normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "truth"),
    [
        ("1,000,000", "1000000"),  # thousands commas
        ("5 million", "5000000"),  # scale words
        ("3.0", "3"),  # a float that is an integer
        ("12 meters", "12"),  # unit words
        ("\\$4", "4"),  # dollar signs
        ("50%", "50"),  # bare percent
        ("7\\frac{3}{4}", "7 3/4"),  # mixed numbers
        ("\\text{Monday}", "monday"),  # case-insensitive text
        ("{5}", "5"),  # outer braces
    ],
)
def test_answers_equal_after_the_sympy_normalisation_match(given: str, truth: str) -> None:
    assert math_reward(boxed(given), truth) == 1.0


def test_the_sympy_normalisation_turns_latex_into_parseable_text() -> None:
    assert normalize_sympy("\\frac{\\sqrt{3}}{2}") == "(sqrt(3))/2"
    assert normalize_sympy("2\\sqrt{2}") == "2sqrt(2)"
    assert normalize_sympy("\\frac{\\pi}{2}") == "pi/2"


# --- (c) tuples, intervals and sympy equality -------------------------------------------------------


def test_tuples_match_element_by_element() -> None:
    assert math_reward(boxed("(3, -1)"), "(3,-1)") == 1.0
    assert math_reward(boxed("\\left(\\frac{1}{2}, 0.5\\right)"), "(\\frac12, \\frac{1}{2})") == 1.0


def test_a_tuple_with_a_wrong_element_scores_zero() -> None:
    assert math_reward(boxed("(3, 1)"), "(3, -1)") == 0.0


def test_a_tuple_of_the_wrong_length_scores_zero() -> None:
    assert math_reward(boxed("(3, -1, 0)"), "(3, -1)") == 0.0


def test_intervals_with_different_brackets_score_zero() -> None:
    assert math_reward(boxed("(2, 5)"), "[2, 5)") == 0.0
    assert math_reward(boxed("[2, 5]"), "[2, 5)") == 0.0
    assert math_reward(boxed("[2, 5)"), "[2, 5)") == 1.0


def test_nested_brackets_are_not_split() -> None:
    assert split_tuple("((1,2),3)") == ["((1,2),3)"]
    assert split_tuple("[1,2)") == ["1", "2"]


@pytest.mark.parametrize(
    ("given", "truth"),
    [
        ("2\\sqrt{2}", "\\sqrt{8}"),
        ("(x+1)^2", "x^2+2x+1"),
        ("\\frac{\\pi}{2}", "\\pi/2"),
        ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
        ("0.25", "\\frac{1}{4}"),
    ],
)
def test_symbolically_equal_expressions_match(given: str, truth: str) -> None:
    assert math_reward(boxed(given), truth) == 1.0


def test_an_unreduced_fraction_is_not_the_answer() -> None:
    assert math_reward(boxed("\\frac{2}{4}"), "\\frac{1}{2}") == 0.0


def test_a_non_integer_never_equals_an_integer_answer() -> None:
    assert math_reward(boxed("\\frac{12}{3}"), "4") == 0.0


def test_a_rounded_decimal_is_not_the_exact_fraction() -> None:
    assert math_reward(boxed("0.333"), "\\frac{1}{3}") == 0.0


@pytest.mark.parametrize(
    ("given", "truth"),
    [("5", "4"), ("-4", "4"), ("x+1", "x-1"), ("2\\sqrt{3}", "\\sqrt{8}"), ("(1,2)", "(2,1)"), ("B", "C")],
)
def test_wrong_answers_score_zero(given: str, truth: str) -> None:
    assert math_reward(boxed(given), truth) == 0.0


def test_an_empty_box_scores_zero() -> None:
    assert math_reward("The answer is \\boxed{}.", "4") == 0.0


def test_a_response_without_a_box_scores_zero_even_with_the_right_number() -> None:
    assert math_reward("The answer is 4.", "4") == 0.0


@pytest.mark.parametrize(
    "response",
    [
        "",
        "\\boxed{",
        "}}}{{{\\boxed{}}}",
        "\\boxed{\\frac{}{}}",
        "\\boxed{\\sqrt}",
        "\\boxed{__import__('os').system('echo hacked')}",
        "\\boxed{9^{9^{9^{9}}}}",
        "\\boxed{9**9**9**9}",
        "\\boxed{2^-99999999}",
        "\\boxed{" + "(" * 500 + "}",
        "\\boxed{\x00\udcff}",
    ],
)
def test_garbage_responses_score_zero_quickly_and_never_raise(response: str) -> None:
    started = time.monotonic()
    assert math_reward(response, "4") == 0.0
    assert time.monotonic() - started < 2.0


def test_answers_match_never_raises_on_garbage_ground_truth() -> None:
    assert answers_match("4", "\\frac{") is False
    assert answers_match("", "") is False


def test_grading_a_thousand_numeric_responses_takes_well_under_a_second() -> None:
    responses = [boxed(str(i % 97)) for i in range(1000)]
    started = time.monotonic()
    rewards = [math_reward(r, "42") for r in responses]
    assert time.monotonic() - started < 0.5
    assert sum(rewards) == 10  # 42, 139, 236, ... are the i with i % 97 == 42


# --- the time limit ---------------------------------------------------------------------------------


def test_run_with_time_limit_interrupts_a_slow_call() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_with_time_limit(lambda: time.sleep(5), 0.1)
    assert time.monotonic() - started < 1.0


def test_run_with_time_limit_re_arms_an_alarm_set_by_the_caller() -> None:
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert run_with_time_limit(lambda: 7, 0.5) == 7
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < remaining <= 30.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_symbolic_grading_works_outside_the_main_thread() -> None:
    results: list[float] = []
    worker = threading.Thread(target=lambda: results.append(math_reward(boxed("2\\sqrt{2}"), "\\sqrt{8}")))
    worker.start()
    worker.join(timeout=30)
    assert results == [1.0]


# --- multiple choice (docs/method.md §6.2) ----------------------------------------------------------------------


@pytest.mark.parametrize("box", ["B", "(B)", "b", "\\text{B}", "\\textbf{(B)}", "B. Mars", "B) Mars", " B "])
def test_choice_reward_accepts_the_usual_spellings_of_a_letter(box: str) -> None:
    assert choice_reward(f"I pick \\boxed{{{box}}}", "B") == 1.0


def test_choice_reward_scores_a_different_letter_zero() -> None:
    assert choice_reward("\\boxed{C}", "B") == 0.0


def test_choice_reward_scores_zero_without_a_box() -> None:
    assert choice_reward("The answer is B.", "B") == 0.0


def test_choice_reward_does_not_take_the_first_letter_of_a_word() -> None:
    assert choice_letter("Blue") is None
    assert choice_reward("\\boxed{Blue}", "B") == 0.0


def test_choice_reward_reads_the_last_box() -> None:
    assert choice_reward("\\boxed{A}\nOn reflection, \\boxed{D}", "D") == 1.0


def test_choice_reward_honours_the_think_gate() -> None:
    assert choice_reward("<think>\\boxed{A}</think>\\boxed{B}", "B", require_think=True) == 1.0
    assert choice_reward("\\boxed{B}", "B", require_think=True) == 0.0


def test_choice_reward_accepts_a_lower_case_answer_key() -> None:
    assert choice_reward("\\boxed{B}", "b") == 1.0
