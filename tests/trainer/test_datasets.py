"""Tasks: the procedural arith task, the creative prompts, dataset loaders and the registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trainer.choices import TASKS
from trainer.data.datasets import (
    ARITH_DEFAULT_MIX,
    ARITH_INSTRUCTION,
    ARITH_LEVELS,
    CREATIVE_PROMPTS,
    TASK_CLASSES,
    ArithTask,
    FileTask,
    Question,
    UngradableError,
    allocate,
    arith_level_questions,
    get_task,
    grade_question,
    in_test_split,
    lenient_answer,
    load_questions,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "datasets"


# --- arith -------------------------------------------------------------------------------------------


LEVEL1_PATTERN = (
    r"(?:What is |What is the sum of |Add |Compute |Calculate |How much is |)"
    r"(\d+) (?:\+|plus|and) (\d+)(?:\?| = \?|\.)"
)


def solve(problem: str) -> int:
    """Recompute a problem's answer from its text, independently of the generator."""
    if m := re.fullmatch(LEVEL1_PATTERN, problem):
        return int(m[1]) + int(m[2])
    if m := re.fullmatch(r"What is (\d+) × (\d+) \+ (\d+)\?", problem):
        return int(m[1]) * int(m[2]) + int(m[3])
    if m := re.fullmatch(r"What is (\d+) \+ (\d+) × (\d+)\?", problem):
        return int(m[1]) + int(m[2]) * int(m[3])
    if m := re.fullmatch(r"Solve for x: (\d+)x ([+-]) (\d+) = (-?\d+)\.", problem):
        a, sign, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        x, remainder = divmod(c - b if sign == "+" else c + b, a)
        assert remainder == 0
        return x
    numbers = [int(n) for n in re.findall(r"\d+", problem)]
    if "gets" in problem:
        return numbers[0] + numbers[1]
    if "gives" in problem:
        return numbers[0] - numbers[1]
    if "in each bag" in problem:
        return numbers[0] * numbers[1]
    if "shares" in problem:
        total, friends = numbers
        assert total % friends == 0
        return total // friends
    raise AssertionError(f"unrecognised problem: {problem}")


@pytest.mark.parametrize("level", ARITH_LEVELS)
def test_every_arith_answer_is_correct(level: int) -> None:
    for q in arith_level_questions(level, 200) + arith_level_questions(level, 50, split="test"):
        assert int(q.answer) == solve(q.meta["problem"]), q


def test_the_same_seed_gives_the_same_questions() -> None:
    assert ArithTask().questions(limit=100, seed=3) == ArithTask().questions(limit=100, seed=3)


def test_a_different_seed_gives_different_questions() -> None:
    first = {q.prompt for q in ArithTask().questions(limit=100, seed=0)}
    second = {q.prompt for q in ArithTask().questions(limit=100, seed=1)}
    assert first != second


def test_train_and_test_questions_never_share_a_problem() -> None:
    train = {q.meta["problem"] for seed in (0, 1) for q in ArithTask().questions("train", seed=seed)}
    test = {q.meta["problem"] for seed in (0, 1) for q in ArithTask().questions("test", seed=seed)}
    assert train.isdisjoint(test)
    assert all(in_test_split(p) for p in test) and not any(in_test_split(p) for p in train)


def test_questions_within_a_split_are_distinct() -> None:
    prompts = [q.prompt for q in ArithTask().questions()]
    assert len(prompts) == len(set(prompts))


def test_arith_ids_name_the_level_and_index_and_stay_stable_as_the_pool_grows() -> None:
    small = {q.id: q for q in ArithTask().questions(limit=20)}
    large = {q.id: q for q in ArithTask().questions(limit=400)}
    assert all(re.fullmatch(r"arith-L[1-4]-\d{6}", qid) for qid in large)
    assert all(large[qid] == q for qid, q in small.items())
    assert small["arith-L1-000000"].meta["level"] == 1


def test_test_split_and_other_seed_ids_are_spelled_out() -> None:
    assert ArithTask().questions("test", limit=1)[0].id.startswith("arith-test-L")
    assert ArithTask().questions("test", limit=1, seed=7)[0].id.startswith("arith-test-s7-L")


def test_the_default_pools_follow_the_level_mix() -> None:
    pool = ArithTask().questions()
    counts = {lvl: sum(q.meta["level"] == lvl for q in pool) for lvl in ARITH_LEVELS}
    assert counts == allocate(len(pool), ARITH_DEFAULT_MIX)
    assert len(ArithTask().questions("test")) < len(pool)


def test_allocate_splits_a_total_exactly_by_weight() -> None:
    assert allocate(10, {1: 0.5, 2: 0.25, 3: 0.25}) == {1: 5, 2: 3, 3: 2}
    assert sum(allocate(7, {1: 1, 2: 1, 3: 1}).values()) == 7


def test_every_arith_prompt_ends_with_the_boxed_instruction() -> None:
    assert all(q.prompt.endswith(ARITH_INSTRUCTION) for q in ArithTask().questions(limit=50))
    assert ARITH_INSTRUCTION.endswith("\\boxed{}.")


def test_an_unknown_level_or_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="level"):
        arith_level_questions(9, 1)
    with pytest.raises(ValueError, match="split"):
        arith_level_questions(1, 1, split="validation")


def test_a_custom_mix_can_leave_levels_out() -> None:
    pool = ArithTask(mix={1: 1.0}).questions(limit=30)
    assert {q.meta["level"] for q in pool} == {1}


# --- the lenient arith grader on what the 135M model actually writes -----------------------------


ARITH_Q = Question(id="arith-L1-000000", prompt="What is 14 + 15? " + ARITH_INSTRUCTION, answer="29")


@pytest.mark.parametrize(
    ("response", "reward"),
    [
        ("14 + 15 = 29", 1.0),  # a bare equation
        ("So the answer is \\boxed{29}.", 1.0),  # the format we ask for
        ("The answer is: 29", 1.0),  # "answer is" with a colon
        ("Tom now has 29 apples.\n\nThe answer is \\boxed{}.", 1.0),  # an empty box: last number
        ("14 + 15 = 29, so the answer is x = 29.", 1.0),  # "answer is x = N"
        ("3 + 10 = 3 + 11 = 14\n\nThe answer is 14.", 0.0),  # a wrong final answer
        ("The answer is 29.\nWait: \\boxed{30}", 0.0),  # a filled box wins over the prose
        ("The answer is 29, not 30.", 1.0),  # "answer is" wins over the last number
        ("I don't know.", 0.0),  # no number at all
        ("", 0.0),
    ],
)
def test_the_arith_grader_reads_small_model_answers_leniently(response: str, reward: float) -> None:
    assert ArithTask().grade(ARITH_Q, response) == reward


def test_lenient_answer_prefers_a_filled_box_then_answer_is_then_the_last_number() -> None:
    assert lenient_answer("answer is 3, \\boxed{4}, 5") == "4"
    assert lenient_answer("answer is 3, then 5") == "3"
    assert lenient_answer("first 3, then 1,000") == "1,000"
    assert lenient_answer("nothing here") is None


def test_the_generic_math_reward_stays_strict_about_the_box() -> None:
    assert grade_question(ARITH_Q, "The answer is: 29") == 0.0
    assert grade_question(ARITH_Q, "\\boxed{29}") == 1.0


# --- creative ------------------------------------------------------------------------------------------


def test_there_are_thirteen_distinct_creative_prompts_asking_for_a_short_story() -> None:
    assert len(CREATIVE_PROMPTS) == 13 == len(set(CREATIVE_PROMPTS))
    assert all(p.startswith("Write a short story") for p in CREATIVE_PROMPTS)


def test_the_creative_task_serves_every_prompt_without_an_answer() -> None:
    questions = get_task("creative").questions("test")
    assert [q.prompt for q in questions] == list(CREATIVE_PROMPTS)
    assert {q.kind for q in questions} == {"creative"} and {q.answer for q in questions} == {""}
    assert questions[0].id == "creative-01"


def test_grading_a_creative_prompt_explains_that_it_has_no_reward() -> None:
    task = get_task("creative")
    with pytest.raises(UngradableError, match="no verifiable reward"):
        task.grade(task.questions()[0], "Once upon a time...")


# --- dataset loaders -------------------------------------------------------------------------------


def test_a_math500_file_loads_as_published() -> None:
    questions = load_questions(FIXTURES / "math500_sample.jsonl")
    assert len(questions) == 5
    first = questions[0]
    assert first.id == "test/prealgebra/9001.json" and first.kind == "math"
    assert first.answer == "\\frac{7}{8}"
    assert first.prompt.startswith("Solve the following math problem") and first.prompt.endswith("$.")
    assert first.meta["subject"] == "Prealgebra" and first.meta["level"] == 2


def test_math500_answers_grade_with_the_math_reward() -> None:
    tuple_q, sqrt_q, interval_q, letter_q = load_questions(FIXTURES / "math500_sample.jsonl")[1:]
    assert grade_question(tuple_q, "\\boxed{(3,-1)}") == 1.0
    assert grade_question(sqrt_q, "\\boxed{2\\sqrt2}") == 1.0
    assert grade_question(interval_q, "\\boxed{(2, 5)}") == 0.0
    assert grade_question(letter_q, "\\boxed{(C)}") == 1.0


def test_an_aime_file_with_integer_answers_loads() -> None:
    questions = load_questions(FIXTURES / "aime_sample.jsonl")
    assert [q.id for q in questions] == ["9001", "9002", "9003"]
    assert questions[0].answer == "67"
    assert grade_question(questions[2], "\\boxed{1}") == 1.0  # AIME's "001"


def test_an_aime_json_list_with_capitalised_fields_loads() -> None:
    questions = load_questions(FIXTURES / "aime2024_sample.json")
    assert [(q.id, q.answer) for q in questions] == [("2024-I-90", "100"), ("2024-II-91", "10")]


def test_a_gpqa_file_becomes_lettered_choices_shuffled_by_id() -> None:
    questions = load_questions(FIXTURES / "gpqa_sample.parquet")
    assert len(questions) == 3 and {q.kind for q in questions} == {"choice"}
    for q in questions:
        assert len(q.choices) == 4
        correct = q.choices["ABCD".index(q.answer)]
        assert correct in {"The photon", "+7", "The mitochondrion"}
        assert "### Question" in q.prompt and f"{q.answer}. {correct}" in q.prompt
    assert len({q.answer for q in questions}) > 1  # the right answer is not always A
    assert load_questions(FIXTURES / "gpqa_sample.parquet") == questions  # the shuffle is deterministic


def test_an_mmlu_pro_file_keeps_its_letter_answers_and_up_to_ten_options() -> None:
    questions = load_questions(FIXTURES / "mmlu_pro_sample.parquet")
    assert [(q.id, q.answer, len(q.choices)) for q in questions] == [
        ("90001", "B", 10),
        ("90002", "C", 4),
        ("90003", "B", 3),
    ]
    assert "J. 3x" in questions[0].prompt
    assert grade_question(questions[1], "Nitrogen: \\boxed{C}") == 1.0


def test_the_generic_schema_accepts_letters_indices_and_choice_texts_as_answers() -> None:
    math, letter, index, text, story = load_questions(FIXTURES / "generic.jsonl")
    assert (math.id, math.kind, math.answer, math.meta["source"]) == ("g-math", "math", "4", "hand-written")
    assert (letter.id, letter.answer) == ("generic-00002", "B")  # the id defaults to <stem>-<row>
    assert index.answer == "C" and text.answer == "B"
    assert story.kind == "creative" and story.prompt == "Write a short poem about rain."


def test_a_json_file_and_the_same_rows_as_jsonl_load_alike(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "generic.jsonl").read_text().splitlines() if line.strip()]
    (tmp_path / "generic.json").write_text(json.dumps(rows))
    from_json = load_questions(tmp_path / "generic.json")
    from_jsonl = load_questions(FIXTURES / "generic.jsonl")
    assert [(q.prompt, q.answer, q.kind) for q in from_json] == [(q.prompt, q.answer, q.kind) for q in from_jsonl]


def test_a_row_without_an_answer_is_reported_with_file_row_and_field() -> None:
    path = FIXTURES / "broken_missing_answer.jsonl"
    with pytest.raises(ValueError, match=r"broken_missing_answer\.jsonl: row 3: missing field 'answer'"):
        load_questions(path)


def test_a_row_without_a_question_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"answer": "1"}\n')
    with pytest.raises(ValueError, match=r"rows\.jsonl: row 1: missing field 'question'"):
        load_questions(path)


def test_invalid_json_is_reported_with_its_row() -> None:
    with pytest.raises(ValueError, match=r"broken_invalid_json\.jsonl: row 2: invalid JSON"):
        load_questions(FIXTURES / "broken_invalid_json.jsonl")


def test_an_answer_that_is_not_one_of_the_choices_is_reported() -> None:
    with pytest.raises(ValueError, match=r"broken_bad_choice\.json: row 2: answer 'F' is not a choice letter"):
        load_questions(FIXTURES / "broken_bad_choice.json")


def test_an_unknown_kind_and_an_unknown_format_are_reported(tmp_path: Path) -> None:
    bad_kind = tmp_path / "k.jsonl"
    bad_kind.write_text('{"question": "q", "answer": "1", "kind": "essay"}\n')
    with pytest.raises(ValueError, match="row 1: unknown kind 'essay'"):
        load_questions(bad_kind)
    table = tmp_path / "rows.csv"
    table.write_text("question,answer\nq,1\n")
    with pytest.raises(ValueError, match=r"unsupported dataset format '\.csv'"):
        load_questions(table)


def test_a_missing_file_is_reported() -> None:
    with pytest.raises(ValueError, match="no such dataset file"):
        load_questions(FIXTURES / "nope.jsonl")


def test_a_hugging_face_datasets_folder_loads_its_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    train = datasets.Dataset.from_list([{"problem": "What is 1 + 1?", "answer": "2", "unique_id": "t1"}])
    test = datasets.Dataset.from_list([{"problem": "What is 2 + 2?", "answer": "4", "unique_id": "e1"}])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    train.save_to_disk(str(tmp_path / "single"))
    assert [q.id for q in load_questions(tmp_path / "dd")] == ["e1"]  # test by default
    assert [q.id for q in load_questions(tmp_path / "dd", split="train")] == ["t1"]
    assert [q.id for q in load_questions(tmp_path / "single")] == ["t1"]
    task = get_task(f"file:{tmp_path / 'dd'}")
    assert [q.id for q in task.questions("train")] == ["t1"]


# --- file tasks and the registry --------------------------------------------------------------------


def test_a_file_task_serves_the_file_and_grades_by_kind() -> None:
    task = get_task(f"file:{FIXTURES / 'generic.jsonl'}")
    assert isinstance(task, FileTask) and task.name.startswith("file:")
    math, letter = task.questions()[:2]
    assert task.grade(math, "\\boxed{4}") == 1.0
    assert task.grade(letter, "\\boxed{(B)}") == 1.0


def test_a_file_task_draws_a_seeded_subset_in_file_order() -> None:
    task = get_task(f"file:{FIXTURES / 'math500_sample.jsonl'}")
    subset = task.questions(limit=3, seed=1)
    all_ids = [q.id for q in task.questions()]
    assert subset == task.questions(limit=3, seed=1) and len(subset) == 3
    assert [q.id for q in subset] == [i for i in all_ids if i in {q.id for q in subset}]


def test_a_file_task_with_a_bad_file_fails_when_it_is_created() -> None:
    with pytest.raises(ValueError, match="row 3"):
        get_task(f"file:{FIXTURES / 'broken_missing_answer.jsonl'}")


def test_the_registry_knows_arith_arith_add_creative_and_sanity() -> None:
    assert TASKS == ("arith", "arith-add", "creative", "sanity")
    assert tuple(TASK_CLASSES) == TASKS
    assert [get_task(name).name for name in TASKS] == list(TASKS)


def test_arith_add_serves_level_one_additions_of_arith_only() -> None:
    questions = get_task("arith-add").questions("train")
    assert len(questions) == 800 and {q.meta["level"] for q in questions} == {1}
    assert all(q.id.startswith("arith-L1-") for q in questions)
    train = {q.prompt for q in get_task("arith-add").questions("train")}
    assert not train & {q.prompt for q in get_task("arith-add").questions("test")}


def test_the_sanity_task_rewards_an_even_number_of_characters_on_questions_of_its_own_split() -> None:
    task = get_task("sanity")
    train, test = task.questions("train"), task.questions("test")
    assert len(train) == len(test) == 12
    assert not {q.id for q in train} & {q.id for q in test}
    assert [task.grade(train[0], text) for text in ("", "a", "ab", "abc")] == [1.0, 0.0, 1.0, 0.0]


def test_an_unknown_task_name_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown task 'gsm8k'; valid: arith, arith-add, creative, sanity, data:<name> or file:<path>"
    ):
        get_task("gsm8k")


def test_an_unknown_question_kind_cannot_be_graded() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        grade_question(Question(id="q", prompt="p", answer="1", kind="essay"), "\\boxed{1}")
