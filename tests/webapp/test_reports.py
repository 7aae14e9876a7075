"""webapp.review.reports: grouping, seed bands, the final-metrics table and the CSV / Markdown / LaTeX exports.

Tables are built by hand from unsaved runs, so none of these tests needs the database.
"""

from __future__ import annotations

import csv
import io

import pytest

from trainer.config import TrainConfig
from webapp.models import Run, SummaryKind
from webapp.review.reports import (
    ExportTable,
    PaperCell,
    PaperRow,
    PaperTable,
    RunGroup,
    SummaryRule,
    Text,
    final_export,
    final_table,
    group_runs,
    latex_escape,
    metric_direction,
    paper_export,
    seed_band,
    study_group_fields,
    to_csv,
    to_latex,
    to_markdown,
    varied_fields,
)
from webapp.review.stats import PairedResult

LAST = SummaryRule(SummaryKind.LAST)  # Run.summary: these tables need no database


def run(pk: int, name: str = "", summary: dict[str, float] | None = None, **config: object) -> Run:
    cfg = TrainConfig(**config)  # type: ignore[arg-type]
    return Run(
        pk=pk,
        name=name or f"run {pk}",
        config=cfg.to_dict(),
        algorithm=cfg.algorithm,
        seed=cfg.seed,
        model_name=cfg.model,
        summary=summary or {},
    )


# --- grouping ------------------------------------------------------------------------------------------


def test_runs_that_differ_only_by_seed_form_one_group() -> None:
    runs = [
        run(1, algorithm="grpo", seed=1),
        run(2, algorithm="grpo", seed=2),
        run(3, algorithm="policy_split", seed=1),
        run(4, algorithm="policy_split", seed=2),
    ]
    assert varied_fields(runs) == ["algorithm"]
    groups = group_runs(runs, ["algorithm"])
    assert [g.label for g in groups] == ["GRPO", "Policy Split"]
    assert [g.run_ids for g in groups] == [[1, 2], [3, 4]]
    assert groups[1].seeds == [1, 2] and groups[1].is_policy_split


def test_grouping_by_nothing_keeps_one_group_per_run() -> None:
    groups = group_runs([run(1, name="a"), run(2, name="b")], [])
    assert [g.label for g in groups] == ["a", "b"]


def test_group_labels_name_the_factor_values() -> None:
    groups = group_runs([run(1, eta=0.01), run(2, eta=0.03)], ["eta"])
    assert [g.label for g in groups] == ["η=0.01", "η=0.03"]


def test_a_study_groups_by_its_declared_factors_except_seed() -> None:
    runs = [run(1, eta=0.01), run(2, eta=0.03)]
    assert study_group_fields({"eta": [0.01, 0.03], "seed": [1, 2]}, runs) == ["eta"]
    assert study_group_fields({"seed": [1, 2]}, [run(1, seed=1), run(2, seed=2)]) == ["algorithm"]


# --- seed bands ------------------------------------------------------------------------------------------


def test_band_is_the_mean_min_max_and_std_across_seeds_at_each_step() -> None:
    band = seed_band(
        [
            ([0, 1, 2], [1.0, 2.0, 3.0]),
            ([0, 1, 2], [3.0, 4.0, 5.0]),
            ([0, 1, 2], [2.0, 3.0, 7.0]),
        ]
    )
    assert band.steps == [0, 1, 2]
    assert band.mean == pytest.approx([2.0, 3.0, 5.0])
    assert band.low == [1.0, 2.0, 3.0]
    assert band.high == [3.0, 4.0, 7.0]
    assert band.std == pytest.approx([1.0, 1.0, 2.0])  # sample std of (1,3,2), (2,4,3), (3,5,7)
    assert band.n == [3, 3, 3]
    assert band.bounds("std") == (pytest.approx([1.0, 2.0, 3.0]), pytest.approx([3.0, 4.0, 7.0]))


def test_band_counts_only_the_runs_that_reached_a_step() -> None:
    band = seed_band([([0, 1, 2], [1.0, 1.0, 1.0]), ([0, 1], [3.0, 3.0])])
    assert band.n == [2, 2, 1]
    assert band.mean == [2.0, 2.0, 1.0]
    assert band.std[-1] == 0.0


def test_long_series_are_binned_so_that_runs_logged_at_different_steps_still_align() -> None:
    a = (list(range(0, 1000, 2)), [1.0] * 500)
    b = (list(range(1, 1000, 2)), [3.0] * 500)
    band = seed_band([a, b], max_points=100)
    assert len(band.steps) == 100
    assert set(band.mean) == {2.0} and set(band.n) == {2}


# --- final-metrics table --------------------------------------------------------------------------------


def test_metric_direction_knows_better_worse_and_neutral_keys() -> None:
    assert metric_direction("normal/accuracy") == 1
    assert metric_direction("actor/pg_loss") == -1
    assert metric_direction("he/entropy") == 0
    assert metric_direction("split/he_normal_kl") == 0


def test_final_table_averages_seeds_and_colours_deltas_against_the_baseline() -> None:
    grpo = RunGroup(
        ("grpo",),
        "GRPO",
        [
            run(1, summary={"normal/accuracy": 0.5, "actor/pg_loss": 0.2}),
            run(2, summary={"normal/accuracy": 0.7, "actor/pg_loss": 0.2}),
        ],
    )
    ps = RunGroup(("ps",), "Policy Split", [run(3, summary={"normal/accuracy": 0.8, "actor/pg_loss": 0.3})])
    table = final_table([grpo, ps], ["normal/accuracy", "actor/pg_loss", "missing"], grpo, rule=LAST)
    base, other = table.rows
    assert base.is_baseline and base.cells[0].value == pytest.approx(0.6)
    assert base.cells[0].std == pytest.approx(0.1414, abs=1e-4)
    assert other.cells[0].delta == pytest.approx(0.2) and other.cells[0].tone == "pos"
    # A higher loss is worse.
    assert other.cells[1].delta == pytest.approx(0.1) and other.cells[1].tone == "neg"
    assert other.cells[2].value is None and other.cells[2].text == "–"


# --- exports ----------------------------------------------------------------------------------------------


def paper() -> PaperTable:
    """Two benchmarks; GRPO is the baseline, Policy Split beats it (‡) and has an HE row."""
    sig = PairedResult("permutation", 500, 0.0123, 0.004, 0.02, 0.003)
    rows = [
        PaperRow("GRPO", "method", [PaperCell(89.12, 0.31), PaperCell(41.04, 0.35)], is_baseline=True),
        PaperRow(
            "Policy Split", "method", [PaperCell(89.33, 0.59, test=sig), PaperCell(43.25, 0.68)], test=sig, best=True
        ),
        PaperRow("+ HE prompt", "he", [PaperCell(87.38, 0.65), PaperCell(None, None)]),
    ]
    return PaperTable(["math500", "aime"], rows, "permutation", "GRPO")


def test_paper_table_averages_the_benchmark_columns_only_when_all_are_present() -> None:
    t = paper()
    assert t.rows[1].avg_acc == pytest.approx((89.33 + 43.25) / 2)
    assert t.rows[1].avg_ent == pytest.approx((0.59 + 0.68) / 2)
    assert t.rows[2].avg_acc is None


def test_markdown_export_is_a_table_with_acc_ent_cells_marks_and_a_legend() -> None:
    md = to_markdown(paper_export(paper()))
    lines = md.splitlines()
    assert lines[2] == "| Method | MATH-500 | AIME-24/25 | Average | Δ Acc [95% CI] | p |"  # paper titles, not keys
    assert lines[3] == "| :--- | :---: | :---: | :---: | :---: | :---: |"
    assert lines[4] == "| GRPO | 89.12 / 0.31 | 41.04 / 0.35 | 65.08 / 0.33 | baseline | – |"
    assert lines[5] == (
        "| Policy Split | 89.33‡ / 0.59 | 43.25 / 0.68 | **66.29‡ / 0.64** | +1.23 [+0.40, +2.00] | 0.003 |"
    )
    assert lines[6].startswith("| + HE prompt | 87.38 / 0.65 | – / – | – / – |")
    assert "† p < 0.05, ‡ p < 0.01" in md


def test_latex_export_uses_booktabs_and_escapes_special_characters() -> None:
    table = ExportTable(
        "Results for eta_0.03 & 50% more",
        ["Method", "score_1"],
        [[Text("ps_eta 100% & #1 {x} $5 ~ ^"), Text("1.00", bold=True)]],
        "lc",
    )
    tex = to_latex(table)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\begin{tabular}{lc}" in tex
    assert r"Method & score\_1 \\" in tex
    assert (r"ps\_eta 100\% \& \#1 \{x\} \$5 \textasciitilde{} \textasciicircum{} & \textbf{1.00} \\") in tex
    assert r"\caption{Results for eta\_0.03 \& 50\% more.}" in tex


def test_latex_escape_handles_backslashes_once_and_maps_our_symbols() -> None:
    assert latex_escape("a\\b") == r"a\textbackslash{}b"
    assert latex_escape("89.33‡ ± 0.1") == r"89.33\textsuperscript{\ddag} $\pm$ 0.1"
    assert latex_escape("η=0.03") == r"$\eta$=0.03"


def test_latex_paper_export_marks_significance_as_superscripts() -> None:
    tex = to_latex(paper_export(paper()))
    assert r"89.33\textsuperscript{\ddag} / 0.59" in tex
    assert r"\textbf{66.29\textsuperscript{\ddag} / 0.64}" in tex
    assert r"$\Delta$ Acc [95\% CI]" in tex
    assert r"+1.23 [+0.40, +2.00]" in tex


def test_csv_export_has_one_number_per_column() -> None:
    rows = list(csv.reader(io.StringIO(to_csv(paper_export(paper(), split=True)))))
    header = rows[0]
    assert header[:6] == ["method", "row", "runs", "math500 acc", "math500 ent", "math500 p"]  # keys, for scripts
    ps = dict(zip(header, rows[2], strict=True))
    assert ps["method"] == "Policy Split"
    assert ps["math500 acc"] == "89.3300"
    assert ps["math500 p"] == "0.003000"
    assert ps["delta acc"] == "1.2300" and ps["p"] == "0.003000" and ps["test"] == "permutation"
    assert dict(zip(header, rows[3], strict=True))["aime acc"] == ""


def test_csv_neutralises_spreadsheet_formulas_in_labels_but_not_negative_numbers() -> None:
    table = ExportTable("t", ["name", "value"], [[Text("=HYPERLINK(1)"), Text("-0.5")]], "lr")
    assert to_csv(table).splitlines()[1] == "'=HYPERLINK(1),-0.5"


def test_markdown_escapes_pipes_and_html_in_run_names() -> None:
    table = ExportTable("t", ["name"], [[Text("a|b <script>")]], "l")
    assert "| a\\|b &lt;script> |" in to_markdown(table)


def test_final_export_writes_mean_std_and_delta() -> None:
    grpo = RunGroup(
        ("grpo",), "GRPO", [run(1, summary={"normal/accuracy": 0.5}), run(2, summary={"normal/accuracy": 0.7})]
    )
    ps = RunGroup(("ps",), "Policy_Split", [run(3, summary={"normal/accuracy": 0.8})])
    table = final_table([grpo, ps], ["normal/accuracy"], grpo, rule=LAST)
    md = to_markdown(final_export(table))
    assert "| GRPO (baseline) | 2 | 0.6 ± 0.14 |" in md
    assert "| Policy\\_Split | 1 | 0.8 (+0.2) |" in md
    rows = list(csv.reader(io.StringIO(to_csv(final_export(table, split=True)))))
    assert rows[0] == ["Group", "Runs", "normal/accuracy", "normal/accuracy std", "normal/accuracy delta"]
    assert rows[2][0] == "Policy_Split" and float(rows[2][4]) == pytest.approx(0.2)
