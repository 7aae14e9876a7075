"""Tasks: where questions come from and how responses are graded.

A task has a ``name``, ``questions(split, *, limit, seed)`` and ``grade(question, response_text)``.
``get_task`` resolves a name from ``trainer.choices.TASKS``, ``data:<name>`` or ``file:<path>``:

- ``arith``: built-in procedural arithmetic / simple-algebra word problems at four levels, made
  deterministically from a seed, with disjoint train and test splits (see :class:`ArithTask`).
- ``creative``: the 13 creative-writing prompts of docs/method.md §6.4, evaluation only (no reward).
- ``sanity``: a reward any model earns about half of the time (an even number of characters), so
  every group has a spread of rewards: the learning signal of the tests (see :class:`SanityTask`).
- ``data:<name>``: a dataset file or folder under the data roots (``trainer.references``), or
  ``file:<path>`` (command line only), read by :func:`load_questions` (MATH-500, AIME,
  GPQA-Diamond and MMLU-Pro files load as published; schema in :func:`load_questions`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trainer.data.rewards import answers_match, boxed_answer, choice_reward, math_reward

# docs/method.md §6.3, paraphrased: one instruction line, a blank line, then the problem.
MATH_PROMPT_TEMPLATE = "Solve the following math problem. Put your final answer inside \\boxed{{}}.\n\n{question}"
# docs/method.md §6.2, paraphrased: the instruction, then a question section and a choices section.
CHOICE_PROMPT_TEMPLATE = (
    "Select the one option that answers the question below, and put the uppercase letter of the "
    "option you choose inside \\boxed{{}}.\n\n### Question\n{question}\n\n### Choices\n{choices}"
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
KINDS = ("math", "choice", "creative")


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    """The full user-turn text, instruction included."""
    answer: str
    kind: str = "math"
    """math | choice | creative."""
    choices: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """What the trainer needs from a task; ``name`` is read-only so frozen dataclasses qualify."""

    @property
    def name(self) -> str: ...

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Question]: ...

    def grade(self, question: Question, response_text: str) -> float: ...


class UngradableError(ValueError):
    """The question has no verifiable reward (creative prompts)."""


def grade_question(question: Question, response_text: str, *, require_think: bool = False) -> float:
    """The reward of a response by the question's kind: math -> math_reward, choice -> choice_reward."""
    if question.kind == "math":
        return math_reward(response_text, question.answer, require_think=require_think)
    if question.kind == "choice":
        return choice_reward(response_text, question.answer, require_think=require_think)
    if question.kind == "creative":
        raise UngradableError(
            f"question {question.id} is a creative-writing prompt: it has no verifiable reward (docs/method.md §6.4); "
            "use it for evaluation (diversity metrics, a judge), not for RL training"
        )
    raise ValueError(f"question {question.id} has unknown kind {question.kind!r}; valid: {', '.join(KINDS)}")


def sample_subset(items: Sequence[Question], limit: int | None, seed: int) -> list[Question]:
    """All items, or ``limit`` of them drawn with ``seed``, kept in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), max(limit, 0)))
    return [items[i] for i in keep]


# ---------------------------------------------------------------------------------------------
# arith: procedural arithmetic and simple algebra
#
# Calibration of the bundled SmolLM2-135M-Instruct (bench/arith_calibration.py: test split, one
# user turn through the chat template, max_new_tokens=96, pure sampling with top_k=0 and top_p=1,
# measured on 2 busy CPU cores). Accuracy, strict (math_reward) / lenient (arith_grade):
#
#   level                          T=1.0                 T=0.6
#   L1  a + b, 1..12, 8 phrasings  0% / 19%  (n=64)      not re-measured
#   L2  a × b + c, small           0% /  0%  (n=64)      not re-measured
#   L3  one-step word problems     0% /  0%  (n=32)      0% / 16%  (n=64)
#   L4  ax ± b = c                 0% / 12%  (n=32)      0% /  8%  (n=64)
#   default mix (0.7/0.1/0.1/0.1)  lenient ≈ 15%         higher (L1 at T=0.6 ≥ T=1.0)
#
# An earlier level 1 (a + b with a, b in 1..50) scored 19% at T=0.6 only, and a harder level 2
# (a, b in 2..9, c in 1..20) 0%, hence the small numbers. Strict grading is 0 everywhere: the 135M
# model never fills the box (it writes "The answer is \boxed{}." or "The answer is: 19"), hence the
# lenient arith grader. At T=1.0 only levels 1 and 4 score at all, so level 1 carries the mix;
# levels 2-3 are headroom that RL can grow into.

ARITH_INSTRUCTION = "Put your final answer in \\boxed{}."
ARITH_LEVELS = (1, 2, 3, 4)
ARITH_DEFAULT_MIX: Mapping[int, float] = {1: 0.7, 2: 0.1, 3: 0.1, 4: 0.1}
"""Level weights: level 1 carries the learning signal at T=1.0; the others are headroom to learn into."""
ARITH_TRAIN_SIZE = 1000
ARITH_TEST_SIZE = 200
ARITH_TEST_SHARE = 5
"""One problem text in this many belongs to the test split (by hash), so splits never overlap."""

# fmt: off
_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena",
          "Mateo", "Nina", "Omar", "Priya", "Sam", "Tara", "Yusuf", "Zoe")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells", "cards",
          "coins")
# fmt: on


@dataclass(frozen=True)
class ArithProblem:
    text: str
    answer: int


# fmt: off
_LEVEL1_PHRASINGS = (
    "What is {a} + {b}?", "What is {a} plus {b}?", "What is the sum of {a} and {b}?", "Add {a} and {b}.",
    "Compute {a} + {b}.", "Calculate {a} + {b}.", "{a} + {b} = ?", "How much is {a} plus {b}?",
)
# fmt: on


def _level1(rng: random.Random) -> ArithProblem:
    a, b = rng.randint(1, 12), rng.randint(1, 12)
    return ArithProblem(rng.choice(_LEVEL1_PHRASINGS).format(a=a, b=b), a + b)


def _level2(rng: random.Random) -> ArithProblem:
    a, b, c = rng.randint(2, 6), rng.randint(2, 6), rng.randint(1, 12)
    if rng.random() < 0.5:
        return ArithProblem(f"What is {a} × {b} + {c}?", a * b + c)
    return ArithProblem(f"What is {c} + {a} × {b}?", a * b + c)


def _level3(rng: random.Random) -> ArithProblem:
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(5, 30), rng.randint(2, 9)
    n = rng.randint(2, 9)
    story = rng.randrange(4)
    if story == 0:
        text = f"{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?"
        return ArithProblem(text, a + b)
    if story == 1:
        text = f"{name} has {a} {items} and gives {b} of them away. How many {items} are left?"
        return ArithProblem(text, a - b)
    if story == 2:
        text = f"{name} has {n} bags with {b} {items} in each bag. How many {items} is that in total?"
        return ArithProblem(text, n * b)
    text = f"{name} shares {n * b} {items} equally among {b} friends. How many {items} does each friend get?"
    return ArithProblem(text, n)


def _level4(rng: random.Random) -> ArithProblem:
    x, a, b = rng.randint(1, 12), rng.randint(2, 9), rng.randint(1, 20)
    if rng.random() < 0.5:
        return ArithProblem(f"Solve for x: {a}x + {b} = {a * x + b}.", x)
    return ArithProblem(f"Solve for x: {a}x - {b} = {a * x - b}.", x)


_LEVEL_MAKERS: Mapping[int, Callable[[random.Random], ArithProblem]] = {
    1: _level1,
    2: _level2,
    3: _level3,
    4: _level4,
}


def in_test_split(problem_text: str) -> bool:
    """Whether a problem text is reserved for the test split (a hash, independent of the seed)."""
    return int(hashlib.sha1(problem_text.encode()).hexdigest(), 16) % ARITH_TEST_SHARE == 0


def arith_problems(level: int, n: int, *, split: str = "train", seed: int = 0) -> Iterator[ArithProblem]:
    """The first ``n`` distinct problems of a level's stream; prefixes are stable as ``n`` grows."""
    if level not in _LEVEL_MAKERS:
        raise ValueError(f"unknown arith level {level}; valid: {', '.join(map(str, ARITH_LEVELS))}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; valid: train, test")
    rng = random.Random(f"arith/{split}/{seed}/L{level}")  # str seeds hash with SHA-512: stable across runs
    seen: set[str] = set()
    for _ in range(200 * n + 1000):  # bounded: a small level must not loop forever
        if len(seen) == n:
            return
        problem = _LEVEL_MAKERS[level](rng)
        if problem.text in seen or in_test_split(problem.text) != (split == "test"):
            continue
        seen.add(problem.text)
        yield problem
    if len(seen) < n:
        raise ValueError(f"arith level {level} has fewer than {n} distinct {split} problems")


def arith_question_id(level: int, k: int, *, split: str = "train", seed: int = 0) -> str:
    """``arith-L2-000123`` for train seed 0; other splits and seeds are spelled out."""
    parts = ["arith"] + (["test"] if split == "test" else []) + ([f"s{seed}"] if seed else [])
    return "-".join([*parts, f"L{level}", f"{k:06d}"])


def arith_level_questions(level: int, n: int, *, split: str = "train", seed: int = 0) -> list[Question]:
    """The first ``n`` questions of one level; the prompt ends with :data:`ARITH_INSTRUCTION`."""
    return [
        Question(
            id=arith_question_id(level, k, split=split, seed=seed),
            prompt=f"{p.text} {ARITH_INSTRUCTION}",
            answer=str(p.answer),
            meta={"level": level, "problem": p.text},
        )
        for k, p in enumerate(arith_problems(level, n, split=split, seed=seed))
    ]


def allocate(total: int, mix: Mapping[int, float]) -> dict[int, int]:
    """Split ``total`` over levels in proportion to ``mix`` (largest remainder, ties to low levels)."""
    weight = sum(mix.values())
    exact = {lvl: total * w / weight for lvl, w in mix.items()}
    counts = {lvl: int(x) for lvl, x in exact.items()}
    by_remainder = sorted(mix, key=lambda lvl: (counts[lvl] - exact[lvl], lvl))
    for lvl in by_remainder[: total - sum(counts.values())]:
        counts[lvl] += 1
    return counts


_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # 42, -7, 1,000, 2.5; not the comma in "29, not"
_ANSWER_IS_RE = re.compile(rf"answer\s+is\s*:?\s*\$?\s*(?:[a-z]\s*=\s*)?({_NUMBER})", re.IGNORECASE)
_LAST_NUMBER_RE = re.compile(_NUMBER)


def lenient_answer(response: str) -> str | None:
    """The answer a small model meant: a filled-in box, else "answer is N", else the last number.

    The bundled 135M model rarely fills ``\\boxed{}`` (it writes "The answer is: 19" or leaves the
    box empty), so grading it strictly would give no learning signal at all.
    """
    boxed = boxed_answer(response)
    if boxed is not None and boxed.strip():
        return boxed
    said = _ANSWER_IS_RE.findall(response)
    if said:
        return str(said[-1])
    numbers = _LAST_NUMBER_RE.findall(response)
    return numbers[-1] if numbers else None


def arith_grade(question: Question, response_text: str) -> float:
    """1.0 when the lenient answer (see :func:`lenient_answer`) equals the question's answer."""
    given = lenient_answer(response_text)
    return float(given is not None and answers_match(given, question.answer))


@dataclass(frozen=True)
class ArithTask:
    """Procedural arithmetic in four levels of difficulty.

    Level 1: a + b with a, b in 1..12, in eight phrasings; 2: a × b + c (a, b in 2..6, c in 1..12);
    3: one-step word problems (+, −, ×, ÷); 4: solve ax + b = c or ax − b = c for an integer x.
    ``mix`` weights the levels (default :data:`ARITH_DEFAULT_MIX`, chosen by calibration, above).

    Deterministic in (split, seed): the same arguments give the same questions and ids. Train and
    test are disjoint because each problem text belongs to one split by hash (:func:`in_test_split`)
    and each split's stream skips the other's texts. Grading is lenient (:func:`lenient_answer`).
    """

    mix: Mapping[int, float] = field(default_factory=lambda: dict(ARITH_DEFAULT_MIX))
    name: str = "arith"
    train_size: int = ARITH_TRAIN_SIZE
    """Questions of the train split when no limit is asked for (the test split has ARITH_TEST_SIZE)."""
    require_think: bool = False
    """Thinking models (docs/method.md §6.1 step 1): 0 without a closing </think>; the answer is read after it."""

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Question]:
        total = limit if limit is not None else (ARITH_TEST_SIZE if split == "test" else self.train_size)
        out: list[Question] = []
        for level, n in allocate(total, self.mix).items():
            out.extend(arith_level_questions(level, n, split=split, seed=seed))
        random.Random(f"arith-order/{split}/{seed}").shuffle(out)  # interleave the levels
        return out

    def grade(self, question: Question, response_text: str) -> float:
        if self.require_think:
            if "</think>" not in response_text:
                return 0.0
            response_text = response_text.rsplit("</think>", 1)[1]
        return arith_grade(question, response_text)


# ---------------------------------------------------------------------------------------------
# creative: docs/method.md §6.4, the 13 story prompts in our own words

CREATIVE_PROMPTS: tuple[str, ...] = (
    "Write a short story about a mysterious door that appears somewhere no one would expect a door.",
    "Write a short story about first contact with humanity, told from the side of the alien civilisation.",
    "Write a short story set in a world where time suddenly starts to run backwards.",
    "Write a short story about a library of blank books that fill with the life story of whoever opens them.",
    "Write a short story about someone whose shadow begins to act on its own.",
    "Write a short story about a city built inside a giant living creature that lies dormant.",
    "Write a short story about a world where a wrist timer shows everyone how much of their life is left.",
    "Write a short story about a lighthouse built not to guide ships but to keep something in the ocean.",
    "Write a short story about a professional memory wiper who stumbles on a forbidden memory of their own.",
    "Write a short story about statues that come to life for a single hour each year.",
    "Write a short story about a radio that receives news broadcasts from fifty years in the future.",
    "Write a short story about a society in which colour is a luxury that has to be bought.",
    "Write a short story about an astronaut who is alone on a planet that is a twin of Earth.",
)


@dataclass(frozen=True)
class CreativeTask:
    """The creative-writing prompts (kind "creative", empty answer); every split holds all 13."""

    name: str = "creative"

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Question]:
        items = [
            Question(id=f"creative-{i:02d}", prompt=p, answer="", kind="creative")
            for i, p in enumerate(CREATIVE_PROMPTS, start=1)
        ]
        return sample_subset(items, limit, seed)

    def grade(self, question: Question, response_text: str) -> float:
        return grade_question(question, response_text)  # raises UngradableError with the reason


# ---------------------------------------------------------------------------------------------
# sanity: a reward that even a random model earns half of the time

SANITY_SIZE = 12


@dataclass(frozen=True)
class SanityTask:
    """Reward 1 when the response has an even number of characters, else 0.

    A random model (``tiny-random``) earns it about half of the time, so every GRPO group has a
    spread of rewards and every algorithm gets a non-zero advantage; on ``arith`` the tiny model
    earns nothing and the update is exactly zero. For tests and smoke runs of the update, not for
    research: the reward says nothing about a response's content. Train and test questions differ.
    """

    name: str = "sanity"

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Question]:
        offset = SANITY_SIZE if split == "test" else 0
        items = [
            Question(id=f"sanity-{i:02d}", prompt=f"Say something about the number {i}.", answer="")
            for i in range(offset, offset + SANITY_SIZE)
        ]
        return sample_subset(items, limit, seed)

    def grade(self, question: Question, response_text: str) -> float:
        return float(len(response_text) % 2 == 0)


# ---------------------------------------------------------------------------------------------
# Dataset files

# Field names, ours first, then the public benchmarks' spellings.
QUESTION_FIELDS = ("question", "problem", "Question", "Problem")
ANSWER_FIELDS = ("answer", "final_answer", "Answer")
ID_FIELDS = ("id", "unique_id", "question_id", "Record ID", "ID")
CHOICE_FIELDS = ("choices", "options")
GPQA_CORRECT = "Correct Answer"
GPQA_INCORRECT = ("Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
_META_MAX_CHARS = 200


def load_questions(path: str | Path, *, split: str | None = None) -> list[Question]:
    """Questions from a dataset file: ``.jsonl``, ``.json`` (a list of rows), ``.parquet``, or a
    Hugging Face ``datasets`` folder written by ``save_to_disk`` (needs the ``datasets`` package).

    Schema of a row: ``question`` (required), ``answer`` (required unless kind is creative),
    optional ``id`` (default ``<file stem>-<row>``), ``kind`` (math | choice | creative) and
    ``choices`` (a list: the prompt lists them as A, B, C…; ``answer`` is then a letter, an index
    or the text of the right choice). Public spellings are accepted as aliases: MATH-500
    (``problem``, ``answer``, ``unique_id``), AIME (``problem``/``question``/``Problem``, ``answer``,
    ``id``/``ID``), DeepMath-103K (``final_answer``), GPQA-Diamond (``Question``, ``Correct Answer``,
    ``Incorrect Answer 1..3``: choices shuffled deterministically by the row's id) and MMLU-Pro
    (``options``, ``answer`` letter, ``question_id``). Short extra fields (subject, level…) go to
    ``meta``. ``split`` picks a split of a ``DatasetDict`` folder (default: test, else train).

    Raises ValueError naming the file, the row and the problem for any unusable row.
    """
    path = Path(path)
    return [_row_question(row, n, path) for n, row in _read_rows(path, split)]


def _read_rows(path: Path, split: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.is_dir():
        yield from enumerate(_read_hf_folder(path, split), start=1)
        return
    if not path.is_file():
        raise ValueError(f"{path}: no such dataset file or folder")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".json":
        yield from enumerate(_read_json_list(path), start=1)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        yield from enumerate(pq.read_table(path).to_pylist(), start=1)
    else:
        raise ValueError(
            f"{path}: unsupported dataset format {suffix!r}; use .jsonl, .json, .parquet or a datasets folder"
        )


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: row {n}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
    return data


def _read_hf_folder(path: Path, split: str | None) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"{path}: reading a Hugging Face datasets folder needs the `datasets` package "
            "(pip install datasets), or export it to .jsonl/.parquet"
        ) from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        chosen = split if split in loaded else next((s for s in ("test", "train") if s in loaded), names[0])
        if split is not None and split not in loaded:
            raise ValueError(f"{path}: no split {split!r}; the folder has {', '.join(names)}")
        loaded = loaded[chosen]
    return [dict(row) for row in loaded]


def _first(row: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        value = row.get(name)
        if value is not None and value != "":
            return name, value
    return None, None


def _require(row: Mapping[str, Any], names: Sequence[str], n: int, path: Path) -> tuple[str, Any]:
    name, value = _first(row, names)
    if name is None:
        accepted = ", ".join(names[1:])
        raise ValueError(f"{path}: row {n}: missing field {names[0]!r} (also accepted: {accepted})")
    return name, value


def _row_question(row: Mapping[str, Any], n: int, path: Path) -> Question:
    q_field, question = _require(row, QUESTION_FIELDS, n, path)
    id_field, raw_id = _first(row, ID_FIELDS)
    qid = str(raw_id) if id_field else f"{path.stem}-{n:05d}"
    if GPQA_CORRECT in row:
        choices, answer = _gpqa_choices(row, qid, n, path)
        used: set[str | None] = {GPQA_CORRECT, *GPQA_INCORRECT}
    else:
        choices, answer, used = _plain_choices_and_answer(row, n, path)
    kind = str(row.get("kind") or ("choice" if choices else "math"))
    if kind not in KINDS:
        raise ValueError(f"{path}: row {n}: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    prompt = _render_prompt(str(question), choices, kind)
    used |= {q_field, id_field, "kind"}
    meta = {k: v for k, v in row.items() if k not in used and _is_short_scalar(v)}
    return Question(id=qid, prompt=prompt, answer=answer, kind=kind, choices=choices, meta=meta)


def _plain_choices_and_answer(
    row: Mapping[str, Any], n: int, path: Path
) -> tuple[tuple[str, ...], str, set[str | None]]:
    """Choices (maybe none) and the answer (a letter when there are choices) of a non-GPQA row."""
    c_field, raw_choices = _first(row, CHOICE_FIELDS)
    choices = _choice_list(raw_choices, c_field, n, path) if c_field else ()
    if row.get("kind") == "creative":
        a_field, raw_answer = _first(row, ANSWER_FIELDS)  # a creative prompt needs no answer
    else:
        a_field, raw_answer = _require(row, ANSWER_FIELDS, n, path)
    answer = _choice_answer(raw_answer, choices, n, path) if choices else _math_answer(raw_answer)
    return choices, answer, {c_field, a_field}


def _math_answer(raw: Any) -> str:
    return "" if raw is None else str(raw).strip()


def _choice_list(raw: Any, name: str, n: int, path: Path) -> tuple[str, ...]:
    if hasattr(raw, "tolist"):  # a numpy array from a pandas-written parquet file
        raw = raw.tolist()
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError(f"{path}: row {n}: field {name!r} must be a non-empty list")
    if len(raw) > len(LETTERS):
        raise ValueError(f"{path}: row {n}: {len(raw)} choices; at most {len(LETTERS)} are supported")
    return tuple(str(c).strip() for c in raw)


def _choice_answer(raw: Any, choices: tuple[str, ...], n: int, path: Path) -> str:
    """The answer letter from a letter ("B", "(b)"), a 0-based index or the right choice's text."""
    letters = LETTERS[: len(choices)]
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(choices):
        return letters[raw]
    text = str(raw).strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?", text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    if text in choices:
        return letters[choices.index(text)]
    raise ValueError(
        f"{path}: row {n}: answer {text!r} is not a choice letter ({letters[0]}–{letters[-1]}), "
        "an index or one of the choices"
    )


def _gpqa_choices(row: Mapping[str, Any], qid: str, n: int, path: Path) -> tuple[tuple[str, ...], str]:
    """GPQA lists the correct answer first; shuffle with the row's id so the letter is stable."""
    options = [row.get(GPQA_CORRECT), *(row.get(f) for f in GPQA_INCORRECT)]
    for name, value in zip((GPQA_CORRECT, *GPQA_INCORRECT), options, strict=True):
        if value is None or str(value).strip() == "":
            raise ValueError(f"{path}: row {n}: missing field {name!r}")
    texts = [str(o).strip() for o in options]
    order = list(range(len(texts)))
    random.Random(f"gpqa/{qid}").shuffle(order)
    choices = tuple(texts[i] for i in order)
    return choices, LETTERS[order.index(0)]


def _render_prompt(question: str, choices: tuple[str, ...], kind: str) -> str:
    if kind == "creative":
        return question.strip()
    if choices:
        listed = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
        return CHOICE_PROMPT_TEMPLATE.format(question=question.strip(), choices=listed)
    return MATH_PROMPT_TEMPLATE.format(question=question.strip())


def _is_short_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(str(value)) <= _META_MAX_CHARS


@dataclass
class FileTask:
    """Questions from a dataset file (``file:<path>``), graded by kind with :func:`grade_question`.

    A plain file has no splits, so every split returns the same questions; a ``DatasetDict`` folder
    serves the requested split. ``require_think`` applies the think gate of docs/method.md §6.1 (thinking models).
    """

    path: Path
    require_think: bool = False
    name: str = ""
    _cache: dict[str, list[Question]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.name = self.name or f"file:{self.path}"
        self.questions("train")  # fail at setup, not at the first training step

    def questions(self, split: str = "train", *, limit: int | None = None, seed: int = 0) -> list[Question]:
        if split not in self._cache:
            self._cache[split] = load_questions(self.path, split=split if self._has_splits() else None)
        return sample_subset(self._cache[split], limit, seed)

    def grade(self, question: Question, response_text: str) -> float:
        return grade_question(question, response_text, require_think=self.require_think)

    def _has_splits(self) -> bool:
        return self.path.is_dir() and (self.path / "dataset_dict.json").is_file()


# ---------------------------------------------------------------------------------------------
# Registry

# Keys are trainer.choices.TASKS (a test holds the two equal); the classes live here.
ARITH_ADD_MIX: Mapping[int, float] = {1: 1.0}
"""arith-add: level 1 only (a + b, 1..12), where SmolLM2-135M already earns some reward: the
2-core demo's task, so that a few minutes of RL visibly move it (the harder levels score 0)."""


def arith_add_task(*, require_think: bool = False) -> ArithTask:
    # 144 sums x 8 phrasings, a fifth of them held out: about 920 distinct train problems.
    return ArithTask(mix=dict(ARITH_ADD_MIX), name="arith-add", train_size=800, require_think=require_think)


TASK_CLASSES: Mapping[str, Callable[[], Task]] = {
    "arith": ArithTask,
    "arith-add": arith_add_task,
    "creative": CreativeTask,
    "sanity": SanityTask,
}


def get_task(name: str, *, require_think: bool = False) -> Task:
    """A task by registry name or ``file:<path>``; ValueError lists the valid names.

    ``require_think`` turns on the think gate of docs/method.md §6.1 (thinking models): dataset files
    grade as the paper does; arith, lenient by design, only requires the closing </think>.
    """
    if name.startswith(("file:", "data:")):
        from trainer.references import NotFound, resolve_task_path

        try:
            path = resolve_task_path(name)
        except NotFound as exc:
            raise ValueError(str(exc)) from None
        return FileTask(path, require_think=require_think, name=name)
    if name == "arith":
        return ArithTask(require_think=require_think)
    if name == "arith-add":
        return arith_add_task(require_think=require_think)
    if name not in TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASK_CLASSES)}, data:<name> or file:<path>")
    return TASK_CLASSES[name]()  # creative prompts have no reward to gate, sanity none to think about
