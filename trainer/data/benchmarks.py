"""Named evaluation benchmarks, read from a local data folder (the app never downloads anything).

``load_benchmark(name)`` returns the benchmark's questions and its grader. Layout of the data
folder (``$PSL_DATA_DIR``, default ``var/data``; the web app passes its ``PSL_DATA_DIR``):

=================  ==========================================  ============================================
name               file(s) under the data folder               public source (download it yourself)
=================  ==========================================  ============================================
``math500``        ``math500/test.jsonl``                      HuggingFaceH4/MATH-500, ``test.jsonl``
                                                               (``problem``, ``answer``, ``unique_id``)
``aime``           ``aime/*.jsonl`` (or ``.json``/``.parquet``)  AIME-24 and AIME-25, one file each, pooled
                                                               (e.g. Maxwell-Jia/AIME_2024 → ``aime24.jsonl``,
                                                               opencompass/AIME2025 → ``aime25.jsonl``;
                                                               ``problem``/``Problem``, ``answer``/``Answer``)
``gpqa_diamond``   ``gpqa_diamond/gpqa_diamond.csv``           Idavidrein/gpqa (gated), ``gpqa_diamond.csv``
                                                               (``Question``, ``Correct Answer``,
                                                               ``Incorrect Answer 1..3``, ``Record ID``)
``mmlu_pro``       ``mmlu_pro/*.parquet`` (or ``*.jsonl``)      TIGER-Lab/MMLU-Pro,
                                                               ``data/test-00000-of-00001.parquet``
                                                               (``question``, ``options``, ``answer`` letter)
``arith``          built in                                    the procedural task's held-out test split
``creative``       built in                                    the 13 creative-writing prompts (docs/method.md §6.4)
=================  ==========================================  ============================================

Every ``.jsonl``/``.json``/``.parquet``/``.csv`` file in a benchmark's folder is read (several
files are pooled, their ids prefixed with the file name). A missing file raises
:class:`BenchmarkMissing` naming the path to create. Rows are parsed by
``trainer.data.datasets.load_questions`` (prompts of docs/method.md §6.2/§6.3); the GPQA CSV, which that loader
does not read, is parsed here row by row with the same schema. Grading: MATH-500 and AIME with
the strict math reward (docs/method.md §6.1), GPQA and MMLU-Pro by the boxed letter (docs/method.md §6.2, §13 Q10),
arith with its lenient grader; creative prompts are not graded (``grade`` returns None).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trainer.data.datasets import (
    ArithTask,
    CreativeTask,
    Question,
    _row_question,
    arith_grade,
    grade_question,
    load_questions,
    sample_subset,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


class BenchmarkMissing(FileNotFoundError):
    """A benchmark's data file is not on this machine; the message names the path to create."""


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    """Display name, as in the paper's tables."""
    kind: str
    """math | choice | arith | creative."""
    folder: str = ""
    """Sub-folder of the data folder ('' = built in)."""
    expected: str = ""
    """The file to create, relative to the data folder (for the error message)."""
    source: str = ""
    """Where the public file comes from."""

    @property
    def graded(self) -> bool:
        return self.kind != "creative"

    @property
    def builtin(self) -> bool:
        return not self.folder


BENCHMARKS: Mapping[str, BenchmarkSpec] = {
    "math500": BenchmarkSpec(
        "math500", "MATH-500", "math", "math500", "math500/test.jsonl", "test.jsonl of HuggingFaceH4/MATH-500"
    ),
    "aime": BenchmarkSpec(
        "aime",
        "AIME-24/25",
        "math",
        "aime",
        "aime/aime24.jsonl",
        "one .jsonl/.json/.parquet per year, e.g. Maxwell-Jia/AIME_2024 and opencompass/AIME2025; "
        "all files in the folder are pooled",
    ),
    "gpqa_diamond": BenchmarkSpec(
        "gpqa_diamond",
        "GPQA-Diam",
        "choice",
        "gpqa_diamond",
        "gpqa_diamond/gpqa_diamond.csv",
        "gpqa_diamond.csv of Idavidrein/gpqa (gated)",
    ),
    "mmlu_pro": BenchmarkSpec(
        "mmlu_pro",
        "MMLU-Pro",
        "choice",
        "mmlu_pro",
        "mmlu_pro/test.parquet",
        "data/test-00000-of-00001.parquet of TIGER-Lab/MMLU-Pro (or a .jsonl export)",
    ),
    "arith": BenchmarkSpec("arith", "Arith (test)", "arith"),
    "creative": BenchmarkSpec("creative", "Creative", "creative"),
}
BENCHMARK_NAMES: tuple[str, ...] = tuple(BENCHMARKS)
TASK_BENCHMARKS: Mapping[str, str] = {**{name: name for name in BENCHMARKS}, "arith-add": "arith"}
"""The held-out benchmark of a training task (arith-add, arith's level 1, is judged on arith's test split)."""


def benchmark_title(name: str) -> str:
    """The paper-style display name of a benchmark ('math500' -> 'MATH-500'); unknown names unchanged."""
    spec = BENCHMARKS.get(name)
    return spec.title if spec else name


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its questions and how to grade one response."""

    spec: BenchmarkSpec
    questions: list[Question]
    require_think: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    def grade(self, question: Question, response_text: str) -> float | None:
        """1.0 / 0.0 for graded benchmarks; None for creative prompts (no verifiable reward)."""
        if self.spec.kind == "creative":
            return None
        if self.spec.kind == "arith":
            return arith_grade(question, response_text)
        return grade_question(question, response_text, require_think=self.require_think)


def default_data_dir() -> Path:
    return Path(os.environ.get("PSL_DATA_DIR") or REPO_ROOT / "var" / "data")


def get_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARK_NAMES)}")
    return BENCHMARKS[name]


def benchmark_files(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The data files of a file-based benchmark, sorted; raises BenchmarkMissing when there are none."""
    spec = get_spec(name)
    if spec.builtin:
        return []
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / spec.folder
    wanted = root / spec.expected
    files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise BenchmarkMissing(
            f"benchmark {name}: no data file; create {wanted} ({spec.source}). "
            f"The data folder is {root} (set PSL_DATA_DIR to use another one)."
        )
    return files


def benchmark_problem(name: str, data_dir: str | Path | None = None) -> str | None:
    """Why a benchmark cannot be loaded here (missing file, unknown name), or None when it can."""
    try:
        benchmark_files(name, data_dir)
    except (BenchmarkMissing, ValueError) as exc:
        return str(exc)
    return None


def load_benchmark(
    name: str,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    require_think: bool = False,
) -> Benchmark:
    """The benchmark's questions (all, or ``limit`` drawn with ``seed`` in file order) and grader.

    ``require_think`` turns on the think gate of docs/method.md §6.1 (thinking models such as Qwen3).
    """
    spec = get_spec(name)
    loader = _BUILTIN.get(name)
    questions = loader(limit, seed) if loader else sample_subset(_load_files(name, data_dir), limit, seed)
    if not questions:
        raise ValueError(f"benchmark {name}: no questions")
    return Benchmark(spec, questions, require_think=require_think)


def _load_files(name: str, data_dir: str | Path | None) -> list[Question]:
    files = benchmark_files(name, data_dir)
    out: list[Question] = []
    for path in files:
        questions = load_gpqa_csv(path) if path.suffix.lower() == ".csv" else load_questions(path)
        if len(files) > 1:  # pooled files (AIME-24 + AIME-25) may reuse ids: prefix the file's stem
            questions = [dataclasses.replace(q, id=f"{path.stem}/{q.id}") for q in questions]
        out.extend(questions)
    return out


def load_gpqa_csv(path: str | Path) -> list[Question]:
    """Questions from a CSV file with GPQA's columns (or the plain schema of ``load_questions``).

    The rows go through the same row parser as ``load_questions``: GPQA's correct answer is
    shuffled among the incorrect ones deterministically by the row's ``Record ID``.
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return [_row_question({k: v for k, v in row.items() if k}, n, path) for n, row in enumerate(rows, start=1)]


def _arith(limit: int | None, seed: int) -> list[Question]:
    # The held-out split is fixed: ``limit`` takes the first problems of each level in the
    # default mix (the same questions for every model), whatever the sampling seed.
    return ArithTask().questions("test", limit=limit)


def _creative(limit: int | None, seed: int) -> list[Question]:
    return CreativeTask().questions("test", limit=limit, seed=seed)


_BUILTIN: Mapping[str, Callable[[int | None, int], list[Question]]] = {"arith": _arith, "creative": _creative}
