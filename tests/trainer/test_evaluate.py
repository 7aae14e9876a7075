"""Benchmarks from the data folder, the evaluation metrics of a mode, and the runner on tiny-random."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trainer.test_judge import StubJudge
from trainer.data import benchmarks
from trainer.evaluation.evaluate import (
    EvalSettings,
    SampleResult,
    evaluate_benchmark,
    graded_metrics,
    main,
    mode_metrics,
)
from trainer.evaluation.judge import JudgeConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


# --- benchmarks -------------------------------------------------------------------------------------


def test_math500_loads_as_published() -> None:
    bench = benchmarks.load_benchmark("math500", data_dir=FIXTURES)
    assert [q.id for q in bench.questions] == [
        "test/prealgebra/1.json",
        "test/prealgebra/2.json",
        "test/algebra/3.json",
    ]
    q = bench.questions[1]
    assert q.answer == "\\frac{3}{4}" and q.kind == "math" and "\\boxed{}" in q.prompt
    assert bench.grade(q, "so the sum is \\boxed{\\frac{3}{4}}") == 1.0
    assert bench.grade(q, "\\boxed{0.7}") == 0.0


def test_aime_pools_every_file_and_keeps_ids_apart() -> None:
    bench = benchmarks.load_benchmark("aime", data_dir=FIXTURES)
    assert [q.id for q in bench.questions] == ["aime24/2024-I-1", "aime24/2024-I-2", "aime25/0", "aime25/1"]
    assert [q.answer for q in bench.questions] == ["24", "9", "1", "55"]


def test_gpqa_csv_shuffles_the_correct_answer_by_record_id() -> None:
    bench = benchmarks.load_benchmark("gpqa_diamond", data_dir=FIXTURES)
    q = bench.questions[0]
    assert q.id == "recA1" and q.kind == "choice"
    assert q.choices[ord(q.answer) - ord("A")] == "The photon"
    assert set(q.choices) == {"The photon", "The gluon", "The W boson", "The graviton"}
    assert bench.grade(q, f"It is \\boxed{{{q.answer}}}.") == 1.0
    assert benchmarks.load_benchmark("gpqa_diamond", data_dir=FIXTURES).questions[0].choices == q.choices


def test_mmlu_pro_parquet_lists_its_options_as_letters() -> None:
    bench = benchmarks.load_benchmark("mmlu_pro", data_dir=FIXTURES)
    q = bench.questions[0]
    assert (q.id, q.answer, len(q.choices)) == ("70", "B", 10)
    assert "B. Mercury" in q.prompt and "J. The Moon" in q.prompt


def test_builtin_benchmarks_need_no_files(tmp_path: Path) -> None:
    arith = benchmarks.load_benchmark("arith", data_dir=tmp_path, limit=8)
    assert len(arith.questions) == 8 and all(q.id.startswith("arith-test-") for q in arith.questions)
    assert arith.grade(arith.questions[0], f"The answer is {arith.questions[0].answer}.") == 1.0
    creative = benchmarks.load_benchmark("creative", data_dir=tmp_path)
    assert len(creative.questions) == 13 and creative.grade(creative.questions[0], "Once upon a time") is None
    assert not creative.spec.graded


def test_limit_draws_a_seeded_subset_in_file_order() -> None:
    a = benchmarks.load_benchmark("math500", data_dir=FIXTURES, limit=2, seed=1)
    b = benchmarks.load_benchmark("math500", data_dir=FIXTURES, limit=2, seed=1)
    assert [q.id for q in a.questions] == [q.id for q in b.questions] and len(a.questions) == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("math500", "math500/test.jsonl"),
        ("aime", "aime/aime24.jsonl"),
        ("gpqa_diamond", "gpqa_diamond/gpqa_diamond.csv"),
        ("mmlu_pro", "mmlu_pro/test.parquet"),
    ],
)
def test_a_missing_file_names_the_path_to_create(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(benchmarks.BenchmarkMissing) as info:
        benchmarks.load_benchmark(name, data_dir=tmp_path)
    assert str(tmp_path / expected) in str(info.value)
    assert "PSL_DATA_DIR" in str(info.value)
    assert benchmarks.benchmark_problem(name, tmp_path) == str(info.value)
    assert benchmarks.benchmark_problem(name, FIXTURES) is None


def test_an_unknown_benchmark_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="valid: math500, aime, gpqa_diamond, mmlu_pro, arith, creative"):
        benchmarks.load_benchmark("hellaswag")


def test_the_data_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSL_DATA_DIR", str(FIXTURES))
    assert len(benchmarks.load_benchmark("math500").questions) == 3


# --- metrics of one mode -------------------------------------------------------------------------------


def sample(
    q: str, i: int, response: str, score: float | None, length: int = 10, ent: float = 1.0, kl: float = 0.0
) -> SampleResult:
    return SampleResult(q, i, response, score, length, ent, kl, truncated=i == 0)


def test_mode_metrics_by_hand() -> None:
    samples = [
        sample("q1", 0, "The answer is 4.", 1.0, length=10, ent=1.0, kl=0.1),
        sample("q1", 1, "the answer is 4", 1.0, length=30, ent=2.0, kl=0.3),
        sample("q2", 0, "2 + 2 = 4 so it is 4", 1.0, length=20, ent=0.5, kl=0.0),
        sample("q2", 1, "It is 5.", 0.0, length=40, ent=0.5, kl=0.0),
    ]
    m = mode_metrics(samples, graded=True, mode="he")
    assert m["n_questions"] == 2 and m["n_samples"] == 4
    # token-weighted entropy: (10·1 + 30·2 + 20·0.5 + 40·0.5) / 100 = 1.0 bit
    assert m["entropy_bits"] == pytest.approx(1.0)
    assert m["length"] == pytest.approx(25.0)
    assert m["kl_to_other"] == pytest.approx(0.1)
    assert m["kl_direction"].startswith("KL(HE‖normal)")
    assert m["truncated_frac"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.75)
    # per-question accuracies 1.0 and 0.5: std 0.35355, SE 0.25, half-width 0.49
    assert m["accuracy_ci"] == pytest.approx([0.75 - 1.959964 * 0.25, 1.0], abs=1e-6)
    # pass@1 = mean(1, 0.5); pass@2 = mean(1, 1)
    assert m["pass_at_k"] == pytest.approx({"1": 0.75, "2": 1.0})
    assert m["best_of_k"] == 1.0
    # q1's two correct answers are one solution; q2 has one correct answer
    assert m["unique_correct"] == pytest.approx(1.0) and m["unique_correct_total"] == 2


def test_creative_samples_have_no_accuracy() -> None:
    m = mode_metrics(
        [sample("c1", 0, "a story", None), sample("c1", 1, "another story", None)], graded=False, mode="normal"
    )
    assert "accuracy" not in m and m["graded"] is False
    assert m["kl_direction"].startswith("KL(normal‖HE)")


def test_best_of_k_counts_questions_with_any_correct_sample() -> None:
    m = graded_metrics(
        [sample("q1", 0, "a", 0.0), sample("q1", 1, "b", 1.0), sample("q2", 0, "c", 0.0), sample("q2", 1, "d", 0.0)]
    )
    assert m["best_of_k"] == 0.5 and m["questions_solved_by_any"] == 1


# --- the runner on tiny-random -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from trainer.registry import load_model, load_tokenizer

    model = load_model("tiny-random")
    model.eval()
    return model, load_tokenizer("tiny-random")


TINY = EvalSettings(k=2, max_new_tokens=6, batch_size=8)


def test_it_evaluates_both_modes_with_finite_inter_mode_kls(tiny: tuple[Any, Any]) -> None:
    bench = benchmarks.load_benchmark("math500", data_dir=FIXTURES, limit=2)
    report = evaluate_benchmark(*tiny, bench, TINY)
    assert set(report.modes) == {"normal", "he"} and report.graded
    for rep in report.modes.values():
        assert len(rep.samples) == 4
        assert [(s.question_id, s.index) for s in rep.samples] == [(q.id, i) for q in bench.questions for i in range(2)]
        assert all(s.score in (0.0, 1.0) and 1 <= s.length <= 6 for s in rep.samples)
        m = rep.metrics
        assert math.isfinite(m["kl_to_other"]) and all(math.isfinite(s.kl) for s in rep.samples)
        assert 0 < m["entropy_bits"] <= math.log2(49152) + 1e-3  # at most log2 of the vocabulary
        assert set(m["pass_at_k"]) == {"1", "2"} and 0 <= m["accuracy"] <= 1
    # the same responses scored under the other context differ from their own context
    assert report.modes["he"].metrics["kl_to_other"] != 0.0


def test_it_can_evaluate_one_mode(tiny: tuple[Any, Any]) -> None:
    bench = benchmarks.load_benchmark("mmlu_pro", data_dir=FIXTURES, limit=1)
    report = evaluate_benchmark(*tiny, bench, EvalSettings(k=1, max_new_tokens=3, modes=("he",)))
    assert list(report.modes) == ["he"] and math.isfinite(report.modes["he"].metrics["kl_to_other"])


class FakeEmbedder:
    def encode(self, texts: list[str], **kwargs: Any) -> Any:
        import torch

        return torch.tensor([[1.0, float(i)] for i, _ in enumerate(texts)])


@pytest.fixture
def stub() -> Iterator[StubJudge]:
    import threading

    s = StubJudge()
    threading.Thread(target=s.server.serve_forever, daemon=True).start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_creative_prompts_get_diversity_and_judge_scores(tiny: tuple[Any, Any], stub: StubJudge) -> None:
    bench = benchmarks.load_benchmark("creative", limit=2)
    cfg = JudgeConfig(url=stub.url, model="stub-judge", timeout=5)
    report = evaluate_benchmark(*tiny, bench, TINY, judge=cfg, embedder=FakeEmbedder())
    m = report.modes["he"].metrics
    assert "accuracy" not in m
    assert set(m["creative_per_prompt"]) == {q.id for q in bench.questions}
    assert m["div_ngram"] is None or 0 <= m["div_ngram"] <= 100
    assert 0 <= m["div_bleu"] <= 100 and m["embedding_diversity"] > 0
    assert m["judge"]["judged"] == 4 and m["judge"]["imagery"] == pytest.approx(90.0)
    assert all(s.judge and s.judge["creativity"] == 70.0 for s in report.modes["he"].samples)
    assert len(stub.requests) == 8  # 2 prompts × k=2 × 2 modes


def test_the_cli_writes_results_and_keeps_going_past_a_missing_benchmark(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "gpqa_diamond", data / "gpqa_diamond")
    out = tmp_path / "results.json"
    code = main(
        [
            "--",
            "--model",
            "tiny-random",
            "--benchmark",
            "gpqa_diamond,math500",
            "--data-dir",
            str(data),
            "--k",
            "2",
            "--max-new-tokens",
            "4",
            "--limit",
            "1",
            "--no-judge",
            "--out",
            str(out),
        ]
    )
    assert code == 1  # math500 is missing
    doc = json.loads(out.read_text())
    assert doc["settings"]["k"] == 2 and doc["settings"]["temperature"] == 0.6
    assert "create " + str(data / "math500" / "test.jsonl") in doc["benchmarks"]["math500"]["error"]
    samples = doc["benchmarks"]["gpqa_diamond"]["modes"]["normal"]["samples"]
    assert len(samples) == 2 and {"response", "score", "length", "entropy_bits", "kl"} <= set(samples[0])


def test_the_cli_rejects_unknown_benchmarks_and_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "tiny-random", "--benchmark", "nope"]) == 2
    assert main(["--model", "tiny-random", "--benchmark", "arith", "--modes", "fast"]) == 2
    assert "modes: choose from normal, he" in capsys.readouterr().err
