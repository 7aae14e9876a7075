"""Where a run's results end up: its Evaluations page and responses, a study's paper table, Workers, Activity.

Evaluations are seeded the way a worker stores them: reports built by ``trainer.evaluation.evaluate``'s own
metric functions from hand-made samples, written by ``webapp.evaluations.services.evaluation_store``. So
every number on the pages follows from the correct/wrong pattern chosen here:

* the run: MATH-500 (the three fixture questions, k = 4) where only the HE mode solves Q2 and
  neither mode solves Q3, plus the creative prompts;
* the study: GRPO and Policy Split, two seeds each, 20 MATH-500 and 20 AIME questions; Policy
  Split is 25 points better on every question's pattern, so its difference passes p < 0.01.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from tests.e2e.helpers import login, plot_traces, wait_for_drawn_points
from trainer.data.benchmarks import BENCHMARKS
from trainer.evaluation.diversity import LN2
from trainer.evaluation.evaluate import ModeReport, SampleResult, creative_metrics, mode_metrics
from webapp.evaluations.services import EvalRequest, evaluation_store, evaluations_create
from webapp.models import Activity, Checkpoint, Evaluation, MetricPoint, Run, Study, Worker
from webapp.services import activity_record, comment_create, verdict_set

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
STEPS = 20
K = 4

# --- the run's evaluations -----------------------------------------------------------------------------

Q1, Q2, Q3 = "test/prealgebra/1.json", "test/prealgebra/2.json", "test/algebra/3.json"
ANSWERS = {Q1: "5", Q2: "\\frac{3}{4}", Q3: "6"}
# Correct samples out of K per question: only HE solves Q2, neither mode solves Q3.
CORRECT = {"normal": {Q1: 4, Q2: 0, Q3: 0}, "he": {Q1: 3, Q2: 2, Q3: 0}}
ENTROPY_BITS = {"normal": 0.4, "he": 0.75}
KL = {"normal": 0.0123, "he": 0.0456}
LENGTH = {"normal": 40, "he": 56}
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
CREATIVE = ("creative-01", "creative-02", "creative-03")
STORIES = {
    "normal": ["The door opened onto a quiet room with a single chair."] * K,
    "he": [
        "A door grew in the orchard and every apple turned to face it.",
        "Behind the fridge, a brass door hummed the tune of a forgotten lullaby.",
        "The lighthouse keeper found a door painted on fog, and it was ajar.",
        "Nobody noticed the door on the moon until it knocked back.",
    ],
}


def _training_curves() -> dict[str, Callable[[int], float]]:
    """The trainer's per-step KL between the modes and entropy per mode (nats)."""
    return {
        "split/he_normal_kl": lambda s: 0.02 + 0.03 * (1 - math.exp(-s / 6)),
        "split/normal_he_kl": lambda s: 0.01 + 0.02 * (1 - math.exp(-s / 6)),
        "normal/entropy": lambda s: 0.6 - 0.2 * (1 - math.exp(-s / 8)),
        "he/entropy": lambda s: 0.9 - 0.1 * (1 - math.exp(-s / 8)),
    }


def _report(mode: str, samples: list[SampleResult], *, graded: bool) -> dict[str, Any]:
    """One (benchmark, mode) report as ``python -m trainer.evaluation.evaluate`` writes it."""
    metrics = mode_metrics(samples, graded=graded, mode=mode)
    if not graded:
        metrics.update(creative_metrics(samples))
    return asdict(ModeReport(mode, metrics, samples))


def _math_samples(mode: str) -> list[SampleResult]:
    out = []
    for qid, correct in CORRECT[mode].items():
        for i in range(K):
            right = i < correct
            if right:
                text = f"Working it out, the answer is \\boxed{{{ANSWERS[qid]}}}."
            elif mode == "he" and qid == Q3 and i == 0:
                text = PAYLOAD
            else:
                text = "I guess \\boxed{7}."
            out.append(SampleResult(qid, i, text, float(right), LENGTH[mode], ENTROPY_BITS[mode], KL[mode], False))
    return out


def _creative_samples(mode: str) -> list[SampleResult]:
    return [
        SampleResult(qid, i, story, None, LENGTH[mode], ENTROPY_BITS[mode], KL[mode], False)
        for qid in CREATIVE
        for i, story in enumerate(STORIES[mode])
    ]


def _evaluated_run(make_run: Callable[..., Run], tmp_path: Path, user: Any) -> Run:
    """A finished Policy Split run with checkpoints at steps 10 and 20, its training curves, and
    finished normal + HE evaluations of MATH-500 and the creative prompts at step 20."""
    run = make_run(name="split eta 0.05", status="succeeded", steps=STEPS, checkpoint_every=10, eta=0.05)
    for step in (10, STEPS):
        folder = tmp_path / "ckpt" / f"step_{step:06d}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        Checkpoint.objects.create(run=run, step=step, path=str(folder))
    curves = _training_curves()
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(run=run, key=key, step=step, value=curve(step))
            for key, curve in curves.items()
            for step in range(1, STEPS + 1)
        ]
    )
    run.step, run.last_checkpoint_step = STEPS, STEPS
    run.summary = {key: curve(STEPS) for key, curve in curves.items()}
    run.save(update_fields=["step", "last_checkpoint_step", "summary"])
    request = EvalRequest(step=STEPS, benchmarks=("math500", "creative"), k=K, limit=3, max_new_tokens=256)
    for ev in evaluations_create(run=run, request=request, user=user, enqueue=False):
        samples = _math_samples(ev.mode) if ev.benchmark == "math500" else _creative_samples(ev.mode)
        evaluation_store(
            ev, _report(ev.mode, samples, graded=ev.benchmark == "math500"), title=BENCHMARKS[ev.benchmark].title
        )
    return run


def _table(page: Page, title: str) -> Locator:
    return page.locator("#eval-results .eval-table-wrap").filter(
        has=page.get_by_role("heading", name=re.compile(f"^{re.escape(title)}"))
    )


def _chart_y(page: Page, selector: str) -> dict[str, list[float]]:
    """Trace name -> y values of one plotly chart."""
    return page.eval_on_selector(selector, "el => Object.fromEntries(el.data.map(t => [t.name, t.y]))")


def _assert_close(actual: list[float], expected: list[float]) -> None:
    assert actual == pytest.approx(expected, abs=1e-6), (actual, expected)


def _assert_payload_inert(page: Page) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined"
    expect(page.locator('img[src="x"]')).to_have_count(0)
    expect(page.locator("script", has_text="__pwned")).to_have_count(0)


@pytest.fixture
def data_dir(settings: Any) -> Path:
    """The fixture benchmark files (MATH-500's three questions and friends) as the server's data folder."""
    settings.PSL_DATA_DIR = FIXTURES
    settings.JUDGE_API_URL = ""
    return FIXTURES


def test_a_member_reads_a_runs_evaluations_and_its_responses_where_model_markup_stays_text(
    page: Page,
    shot: Callable[[str], Any],
    make_run: Callable[..., Run],
    data_dir: Path,
    tmp_path: Path,
    bob: Any,
) -> None:
    run = _evaluated_run(make_run, tmp_path, bob)

    login(page, bob)
    page.goto(f"/runs/{run.pk}/")
    page.locator("#run-header").get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("heading", name="Evaluations", exact=True)).to_be_visible()
    assert page.url.endswith(f"/runs/{run.pk}/evaluations/")
    expect(page.locator("#eval-active")).to_have_count(0)  # everything finished: no "In progress", no polling

    # Results: one table per benchmark, one row per mode, the numbers the samples imply.
    math500 = _table(page, "MATH-500")
    expect(math500.locator("tbody tr")).to_have_count(2)
    ci = re.compile(r"^\[\d+\.\d, \d+\.\d\]$")
    # normal: 4/4, 0/4, 0/4 correct -> 33.33 %, pass@4 33.33; HE: 3/4, 2/4, 0/4 -> 41.67 %, pass@4 66.67
    expect(math500.locator("tr.eval-row-normal td")).to_have_text(
        [
            "20",
            "Normal",
            "Succeeded",
            "33.33",
            ci,
            "0.400",
            "40.0",
            "33.33",
            "33.33",
            "0.33",
            "0.0123",
            "4",
            "responses",
        ]
    )
    expect(math500.locator("tr.eval-row-he td")).to_have_text(
        [
            "20",
            "High-entropy",
            "Succeeded",
            "41.67",
            ci,
            "0.750",
            "56.0",
            "41.67",
            "66.67",
            "0.67",
            "0.0456",
            "4",
            "responses",
        ]
    )
    creative = _table(page, "Creative")
    expect(creative.locator("thead th")).to_have_text(
        ["Step", "Mode", "Status", "Ent (bits)", "Length", "KL", "Div-N-Gram", "Div-BLEU", "Emb div", "Judge", "k", ""]
    )
    stored = {ev.mode: ev.metrics for ev in run.evaluations.filter(benchmark="creative")}
    assert stored["normal"]["div_bleu"] == pytest.approx(0.0)  # one story repeated k times
    assert stored["he"]["div_bleu"] > 50  # four different stories
    # Div-BLEU of the repeated story is 0 up to float noise, shown as 0.00 (not -0.00); no embedder, no judge.
    he_bleu = f"{stored['he']['div_bleu']:.2f}"
    for mode, label, div_bleu in (("normal", "Normal", "0.00"), ("he", "High-entropy", he_bleu)):
        expect(creative.locator(f"tr.eval-row-{mode} td")).to_have_text(
            [
                "20",
                label,
                "Succeeded",
                f"{ENTROPY_BITS[mode]:.3f}",
                f"{LENGTH[mode]:.1f}",
                f"{KL[mode]:.4f}",
                f"{stored[mode]['div_ngram']:.2f}",
                div_bleu,
                "–",
                "–",
                "4",
                "responses",
            ]
        )

    # Analysis: the training curves (entropy nats -> bits) with the evaluations as markers, and best-of-k.
    charts = wait_for_drawn_points(page, "#eval-analysis .chart", trace="KL(HE‖normal) on HE rollouts", points=STEPS)
    assert len(charts) == 3, charts  # KL, entropy, one pass@k chart (creative prompts are not graded)
    kl, entropy, _ = charts
    assert {t["name"]: t["points"] for t in kl} == {
        "KL(HE‖normal) on HE rollouts": STEPS,
        "KL(normal‖HE) on normal rollouts": STEPS,
        "evaluation, normal": 2,
        "evaluation, HE": 2,
    }  # one marker per benchmark and mode
    assert {t["name"]: t["points"] for t in entropy} == {
        "normal mode": STEPS,
        "HE mode": STEPS,
        "evaluation, normal": 2,
        "evaluation, HE": 2,
    }
    curves = _training_curves()
    kl_y, entropy_y = _chart_y(page, "#chart-kl"), _chart_y(page, "#chart-entropy")
    steps = range(1, STEPS + 1)
    _assert_close(kl_y["KL(HE‖normal) on HE rollouts"], [curves["split/he_normal_kl"](s) for s in steps])
    _assert_close(kl_y["evaluation, HE"], [KL["he"], KL["he"]])
    _assert_close(entropy_y["normal mode"], [curves["normal/entropy"](s) / LN2 for s in steps])
    _assert_close(entropy_y["HE mode"], [curves["he/entropy"](s) / LN2 for s in steps])
    _assert_close(entropy_y["evaluation, normal"], [ENTROPY_BITS["normal"]] * 2)
    (passk,) = plot_traces(page, "#passk-0")
    assert [(t["name"], t["points"], t["drawn"]) for t in passk] == [("normal mode", K, K), ("HE mode", K, K)]
    expect(page.locator("#eval-analysis figcaption").last).to_have_text("MATH-500 · step 20 · pass@k (%)")
    passk_y = _chart_y(page, "#passk-0")
    # normal solves Q1 only, whatever k; HE: pass@2 = (1 + 5/6 + 0) / 3, and Q2 is certain from k = 3
    _assert_close(passk_y["normal mode"], [100 / 3] * K)
    _assert_close(passk_y["HE mode"], [500 / 12, 100 * (1 + 5 / 6) / 3, 200 / 3, 200 / 3])

    # Questions only one mode solved: exactly Q2, by HE.
    one_mode = page.locator("table.eval-one-mode tbody tr")
    expect(one_mode).to_have_count(1)
    expect(one_mode.locator("td")).to_have_text(["math500", "20", Q2, "HE only", "0/4", "2/4", "normal · HE"])
    expect(page.locator("#eval-analysis")).to_contain_text(
        "Only the normal mode found a correct answer on 0 questions; only the HE mode on 1."
    )

    # The form: a member may evaluate the base model or any checkpoint on disk, the latest by default.
    form = page.locator("#eval-form")
    step = form.get_by_label("Checkpoint step")
    expect(step.locator("option")).to_have_text(["0 (untrained base model)", "10", "20"])
    expect(step).to_have_value("20")
    expect(form.get_by_label("MATH-500", exact=True)).to_be_enabled()
    expect(form.get_by_label("LLM judge for creative prompts")).to_be_disabled()  # no JUDGE_API_URL
    expect(form.get_by_role("button", name="Queue evaluation")).to_be_visible()
    shot("evaluations")

    # The HE responses to the question only HE solved, then the same question in the normal mode.
    one_mode.get_by_role("link", name="HE", exact=True).click()
    expect(page.get_by_role("heading", name="MATH-500 · High-entropy (HE system prompt) · step 20")).to_be_visible()
    questions = page.locator("article.eval-question")
    expect(questions).to_have_count(1)
    expect(questions.locator("h3")).to_have_text(f"{Q2} · 2/4 correct")
    expect(questions.locator(".eval-sample.eval-ok")).to_have_count(2)
    expect(questions.locator(".eval-sample.eval-bad")).to_have_count(2)
    questions.get_by_text("Prompt · answer").click()  # the question text comes from the benchmark file
    expect(questions.locator("details pre.response")).to_contain_text("Compute $\\frac{1}{2} + \\frac{1}{4}$.")
    shot("he-responses-one-question")
    page.get_by_role("link", name="Same question in the Normal mode").click()
    expect(page.get_by_role("heading", name="MATH-500 · Normal · step 20")).to_be_visible()
    expect(page.locator("article.eval-question h3")).to_have_text(f"{Q2} · 0/4 correct")

    # All HE responses, filtered: solved by some sample (Q1, Q2), never solved (Q3, with the payload).
    page.get_by_role("link", name="Evaluations", exact=True).click()
    _table(page, "MATH-500").locator("tr.eval-row-he").get_by_role("link", name="responses").click()
    expect(page.get_by_text("3 questions", exact=True)).to_be_visible()
    expect(questions.locator("h3")).to_have_text([f"{Q3} · 0/4 correct", f"{Q1} · 3/4 correct", f"{Q2} · 2/4 correct"])
    page.get_by_label("Show").select_option(label="solved by some sample")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"show=correct"))
    expect(questions.locator("h3")).to_have_text([f"{Q1} · 3/4 correct", f"{Q2} · 2/4 correct"])
    page.get_by_label("Show").select_option(label="never solved")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"show=wrong"))
    expect(questions.locator("h3")).to_have_text([f"{Q3} · 0/4 correct"])
    expect(questions.locator(".eval-sample.eval-ok")).to_have_count(0)
    expect(questions.locator(".eval-sample pre.response").first).to_have_text(PAYLOAD)
    _assert_payload_inert(page)
    shot("he-responses-never-solved")


# --- a study ------------------------------------------------------------------------------------------------

N_QUESTIONS = 20
# Correct samples out of K per question, repeating over the questions; seed 2 is shifted by one question.
PATTERNS: dict[tuple[str, str, str], tuple[int, ...]] = {
    ("grpo", "normal", "math500"): (2, 2, 1, 3),  # 50 %
    ("grpo", "normal", "aime"): (1, 0, 1, 2),  # 25 %
    ("policy_split", "normal", "math500"): (3, 4, 2, 3),  # 75 %: better on every question
    ("policy_split", "normal", "aime"): (2, 1, 2, 3),  # 50 %: better on every question
    ("policy_split", "he", "math500"): (3, 3, 2, 2),  # 62.5 %: better on half the questions
    ("policy_split", "he", "aime"): (1, 0, 1, 2),  # 25 %: the same as GRPO
}
STUDY_ENTROPY = {"grpo": 0.30, "policy_split": 0.50}  # bits on MATH-500 for seed 1; +0.1 on AIME, +0.3 with HE


def _study_entropy(algorithm: str, mode: str, benchmark: str, seed: int) -> float:
    return (
        STUDY_ENTROPY[algorithm]
        + (0.3 if mode == "he" else 0.0)
        + (0.1 if benchmark == "aime" else 0.0)
        + 0.04 * (seed - 1)
    )


def _study_evaluation(run: Run, mode: str, benchmark: str) -> Evaluation:
    pattern = PATTERNS.get((run.algorithm, mode, benchmark)) or PATTERNS[(run.algorithm, "normal", benchmark)]
    entropy = _study_entropy(run.algorithm, mode, benchmark, run.seed)
    samples = []
    for q in range(N_QUESTIONS):
        correct = pattern[(q + run.seed - 1) % len(pattern)]
        samples += [
            SampleResult(
                f"{benchmark}/q{q:02d}",
                i,
                "\\boxed{1}" if i < correct else "\\boxed{0}",
                float(i < correct),
                30,
                entropy,
                0.01,
                False,
            )
            for i in range(K)
        ]
    ev = Evaluation.objects.create(run=run, step=STEPS, benchmark=benchmark, mode=mode, settings={"k": K})
    return evaluation_store(ev, _report(mode, samples, graded=True), title=BENCHMARKS[benchmark].title)


def _study(make_run: Callable[..., Run], project: Any, user: Any) -> Study:
    study = Study.objects.create(
        project=project,
        name="GRPO vs Policy Split",
        created_by=user,
        factors={"algorithm": ["grpo", "policy_split"], "seed": [1, 2]},
    )
    for algorithm, short in (("grpo", "grpo"), ("policy_split", "split")):
        for seed in (1, 2):
            run = make_run(name=f"{short} s{seed}", status="succeeded", algorithm=algorithm, seed=seed, steps=STEPS)
            lift = 0.2 if algorithm == "policy_split" else 0.0
            curves = {
                "normal/accuracy": lambda s, lift=lift: 0.2 + lift + 0.3 * s / STEPS,
                "train/reward": lambda s, lift=lift: 0.1 + lift + 0.4 * s / STEPS,
            }
            MetricPoint.objects.bulk_create(
                [
                    MetricPoint(run=run, key=key, step=step, value=curve(step) + 0.01 * seed)
                    for key, curve in curves.items()
                    for step in range(1, STEPS + 1)
                ]
            )
            run.study, run.step = study, STEPS
            run.summary = {key: curve(STEPS) + 0.01 * seed for key, curve in curves.items()}
            run.save(update_fields=["study", "step", "summary"])
            for benchmark in ("math500", "aime"):
                for mode in ("normal", "he"):
                    _study_evaluation(run, mode, benchmark)
    return study


def _cells(row: Locator) -> Locator:
    """A row's accuracy/entropy cells; each benchmark cell also states its n (tested on its own)."""
    return row.locator("td.pt-cell")


def _n_per_cell(row: Locator) -> Locator:
    return row.locator("td.pt-cell .pt-n")


def _download(page: Page, link: Locator) -> tuple[str, str]:
    with page.expect_download() as info:
        link.click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


def test_a_study_of_grpo_and_policy_split_seeds_reads_as_the_papers_table_with_significance_and_exports(
    page: Page,
    shot: Callable[[str], Any],
    make_run: Callable[..., Run],
    project: Any,
    alice: Any,
) -> None:
    study = _study(make_run, project, alice)

    login(page, alice)
    page.goto(f"/projects/{project.pk}/runs/")
    page.get_by_role("link", name="Studies", exact=True).click()
    page.get_by_role("link", name="GRPO vs Policy Split").click()
    expect(page.get_by_role("heading", name="GRPO vs Policy Split")).to_be_visible()
    assert page.url.endswith(f"/studies/{study.pk}/")
    expect(page.locator(".page-head")).to_contain_text("4 runs counted in 2 groups")

    # Without a baseline: Acc / Ent per benchmark (seeds averaged) and the average, no tests.
    results = page.locator("#results")
    table = results.locator("table.paper-table")
    expect(table.locator("thead th.pt-bench")).to_have_text(["MATH-500", "AIME-24/25", "Average"])
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.locator("th.pt-label")).to_have_text(
        ["GRPO 2 seeds · step 20", "Policy Split 2 seeds · step 20", "+ HE prompt 2 seeds · step 20"]
    )
    expect(rows.nth(2)).to_have_class(re.compile(r"\bpt-he\b"))  # only Policy Split gets the HE row
    expect(_cells(rows.nth(0))).to_have_text(["50.00/0.32n=2", "25.00/0.42n=2", "37.50/0.37"])
    expect(_cells(rows.nth(1))).to_have_text(["75.00/0.52n=2", "50.00/0.62n=2", "62.50/0.57"])
    expect(_cells(rows.nth(2))).to_have_text(["62.50/0.82n=2", "25.00/0.92n=2", "43.75/0.87"])
    expect(_n_per_cell(rows.nth(0))).to_have_text(["n=2", "n=2"])  # two seeds per cell, both evaluated
    expect(table.locator("td.pt-best")).to_have_count(1)
    expect(rows.nth(1).locator("td.pt-best")).to_have_count(1)  # the best average is Policy Split's
    expect(table.locator("sup.sig")).to_have_text([""] * 9)
    expect(results).to_contain_text("Set a baseline run to see deltas and significance tests.")
    # The curves above it: one mean line per group (and its min-max band) on each logged metric.
    charts = wait_for_drawn_points(page, ".study-charts .js-plotly-plot", trace="Policy Split", points=STEPS)
    assert len(charts) == 2, charts
    for traces in charts:
        assert sorted(t["name"] for t in traces if t["name"]) == ["GRPO", "Policy Split"], traces
    shot("study-no-baseline")

    # GRPO seed 1 as the baseline, from the runs table: its group becomes the reference row.
    page.locator("table.study-runs tr", has_text="grpo s1").get_by_role("button", name="Set as baseline").click()
    expect(page.get_by_text("Baseline set to “grpo s1”.")).to_be_visible()
    expect(table.locator("thead th")).to_have_text(
        ["Method", "MATH-500", "AIME-24/25", "Average", "Δ Acc [95% CI]", "p", "Acc / Ent", "Acc / Ent", "Acc / Ent"]
    )
    expect(rows.nth(0).locator(".badge-baseline")).to_have_text("baseline")
    # Permutation test (the default), stratified by benchmark: Policy Split is better on all 40 questions
    # (Monte Carlo p = 1/5001); HE only on 10 MATH-500 questions (p ≈ 2/2^10) and tied on AIME (p = 1).
    expect(_cells(rows.nth(1))).to_have_text(["75.00‡/0.52n=2", "50.00‡/0.62n=2", "62.50‡/0.57"])
    expect(_cells(rows.nth(2))).to_have_text(["62.50‡/0.82n=2", "25.00/0.92n=2", "43.75‡/0.87"])
    expect(rows.locator("td.pt-num")).to_have_text(
        [
            "–",
            "–",
            re.compile(r"^\+25\.00 \[\+\d+\.\d\d, \+\d+\.\d\d\]$"),
            "< 0.001‡",
            re.compile(r"^\+6\.25 \[\+\d+\.\d\d, \+\d+\.\d\d\]$"),
            re.compile(r"^0\.00\d‡$"),
        ]
    )
    expect(rows.nth(1).locator(".pt-delta")).to_have_class(re.compile(r"\bdelta-pos\b"))
    expect(rows.nth(2).locator("td.pt-cell").nth(1)).to_have_attribute(
        "title", re.compile(r"^Δ \+0\.00 pts .*p = 1\.000, n = 20 questions$")
    )
    legend = results.locator(".pt-legend")
    expect(legend).to_contain_text(
        "Significance vs GRPO: † p < 0.05, ‡ p < 0.01 — paired sign-flip permutation "
        "test on per-question mean accuracy over the k samples"
    )
    expect(legend).to_contain_text("stratified by benchmark")
    expect(results.get_by_role("link", name="Permutation (sign-flip)")).to_have_class(re.compile(r"\bactive\b"))
    shot("study-permutation-test")

    name, markdown = _download(page, results.locator(".seg[aria-label=Export]").get_by_role("link", name="Markdown"))
    assert name == "grpo-vs-policy-split-paper.md"
    lines = markdown.splitlines()
    # The export names its summary: which evaluation each run contributes.
    assert lines[0] == (
        "**GRPO vs Policy Split: Evaluation results "
        "(Acc / Ent; held-out evaluation of each run's latest evaluated checkpoint)**"
    )
    assert "| Method | MATH-500 | AIME-24/25 | Average | Δ Acc [95% CI] | p |" in lines
    assert "| GRPO (2 seeds) | 50.00 / 0.32 | 25.00 / 0.42 | 37.50 / 0.37 | baseline | – |" in lines
    policy_split = re.compile(
        r"\| Policy Split \(2 seeds\) \| 75\.00‡ / 0\.52 \| 50\.00‡ / 0\.62 \| "
        r"\*\*62\.50‡ / 0\.57\*\* \| \+25\.00 \[.*\] \| < 0\.001 \|"
    )
    assert any(policy_split.fullmatch(line) for line in lines), lines
    assert any(
        line.startswith("| + HE prompt | 62.50‡ / 0.82 | 25.00 / 0.92 | 43.75‡ / 0.87 | +6.25 [") for line in lines
    ), lines
    assert "paired sign-flip permutation test" in markdown

    # The exact McNemar test instead: majority-vote correctness, pooled over the benchmarks.
    results.get_by_role("link", name="McNemar (exact)").click()
    expect(page).to_have_url(re.compile(r"test=mcnemar"))
    expect(results.get_by_role("link", name="McNemar (exact)")).to_have_class(re.compile(r"\bactive\b"))
    expect(legend).to_contain_text("exact McNemar test on per-question correctness")
    # Policy Split alone solves 25 of the 40 questions by majority, HE alone 10 (p = 2/2^10): Δ = share of questions.
    expect(rows.locator("td.pt-num")).to_have_text(
        ["–", "–", re.compile(r"^\+62\.50 \[.*\]$"), "< 0.001‡", re.compile(r"^\+25\.00 \[.*\]$"), "0.002‡"]
    )
    shot("study-mcnemar-test")

    name, latex = _download(page, results.locator(".seg[aria-label=Export]").get_by_role("link", name="LaTeX"))
    assert name == "grpo-vs-policy-split-paper.tex"
    assert r"\begin{tabular}{lccccc}" in latex and r"\toprule" in latex and r"\bottomrule" in latex
    assert r"GRPO (2 seeds) & 50.00 / 0.32 & 25.00 / 0.42 & 37.50 / 0.37 & baseline & -- \\" in latex
    assert (
        r"Policy Split (2 seeds) & 75.00\textsuperscript{\ddag} / 0.52 & 50.00\textsuperscript{\ddag} / 0.62 & "
        r"\textbf{62.50\textsuperscript{\ddag} / 0.57} & +62.50 ["
    ) in latex
    assert r"& 0.002 \\" in latex and r"\textless{} 0.001" in latex
    assert "exact McNemar test" in latex


# --- workers and activity -----------------------------------------------------------------------------------


def test_the_workers_page_shows_every_heartbeat_and_the_activity_feed_lists_what_happened_newest_first(
    page: Page,
    shot: Callable[[str], Any],
    settings: Any,
    make_run: Callable[..., Run],
    project: Any,
    other_project: Any,
    alice: Any,
    bob: Any,
    vera: Any,
) -> None:
    settings.PSL_HEARTBEAT_SECONDS = 60  # online = seen in the last 3 minutes, however slow the test
    now = timezone.now()
    ours = make_run(name="split eta 0.1", status="running", steps=STEPS)
    theirs = make_run(name="rival secret run", status="running", project=other_project)
    Worker.objects.create(
        name="gpu-node-1@celery",
        hostname="gpu-node-1",
        queues=["gpu", "eval"],
        gpus=[{"index": 0, "name": "A100-SXM4-80GB", "memory_free_mb": 40960, "memory_total_mb": 81920}],
        memory_free_mb=123456,
        current_run=ours,
        last_seen_at=now,
    )
    Worker.objects.create(
        name="rival-gpu@celery",
        hostname="rival-gpu",
        queues=["gpu"],
        memory_free_mb=2048,
        current_run=theirs,
        last_seen_at=now - timedelta(seconds=30),
    )
    Worker.objects.create(
        name="cpu-box@celery",
        hostname="cpu-box",
        queues=["cpu"],
        memory_free_mb=8000,
        last_seen_at=now - timedelta(hours=2),
    )

    # The feed: a launch yesterday, then today a comment, a verdict and the system's final evaluation.
    launched = activity_record(
        project=project, actor=alice, verb="launched", target=ours.name, url=ours.get_absolute_url()
    )
    Activity.objects.filter(pk=launched.pk).update(created_at=now - timedelta(days=1))
    comment_create(target=ours, author=bob, body="KL keeps rising after step 10.")
    verdict_set(target=ours, author=alice, verdict="needs_work", note="one more seed")
    activity_record(
        project=project,
        actor=None,
        verb="evaluated",
        target=f"{ours.name}: math500 at step 20",
        url=ours.get_absolute_url() + "evaluations/",
    )
    activity_record(project=other_project, actor=None, verb="launched", target=theirs.name)  # another team's

    login(page, vera)
    page.goto("/")
    page.get_by_role("link", name="Workers", exact=True).click()
    expect(page.get_by_role("heading", name="Workers", exact=True)).to_be_visible()
    workers = page.locator("table.data tbody tr")
    expect(workers).to_have_count(3)  # most recently seen first
    expect(workers.locator("td:first-child strong")).to_have_text(
        ["gpu-node-1@celery", "rival-gpu@celery", "cpu-box@celery"]
    )
    gpu, rival, cpu = workers.nth(0), workers.nth(1), workers.nth(2)
    expect(gpu.locator("td")).to_have_text(
        [
            re.compile(r"gpu-node-1@celery\s*gpu-node-1"),
            "online",
            "gpueval",
            "#0 A100-SXM4-80GB · 40960 / 81920 MB free",
            "123,456 MB",
            "split eta 0.1",
            re.compile(r"^(now|a second ago|\d+\sseconds ago)$"),
        ]
    )
    expect(gpu.get_by_role("link", name="split eta 0.1")).to_have_attribute("href", ours.get_absolute_url())
    expect(gpu.locator(".tag")).to_have_text(["gpu", "eval"])
    expect(rival.locator("td").nth(1)).to_have_text("online")
    expect(rival.locator("td").nth(5)).to_have_text("busy (another team)")  # never the other team's run name
    expect(rival.locator("a[href*='/runs/']")).to_have_count(0)  # its queue links, never to the run
    expect(cpu.locator("td").nth(1)).to_have_text("offline")
    expect(cpu.locator("td").nth(3)).to_have_text("CPU only")
    expect(cpu.locator("td").nth(5)).to_have_text("idle")
    expect(cpu.locator("td").nth(6)).to_have_text(re.compile(r"^2\shours ago$"))
    shot("workers")

    page.get_by_role("link", name="Policy Split Lab").click()
    page.get_by_role("link", name="Entropy").click()
    page.get_by_role("link", name="Activity", exact=True).click()
    expect(page.get_by_role("heading", name="Activity", exact=True)).to_be_visible()
    expect(page.locator(".activity-day")).to_have_text(["Today", "Yesterday"])
    items = page.locator(".activity-item .activity-text")
    # Rivals' launch is not in Lab's feed.
    expect(items).to_have_text(
        [
            "system evaluated split eta 0.1: math500 at step 20",
            "alice set verdict “Needs work” on split eta 0.1",
            "bob commented on split eta 0.1",
            "alice launched split eta 0.1",
        ]
    )
    expect(page.locator(".activity-item .avatar")).to_have_text(["·", "A", "B", "A"])
    expect(page.locator(".activity-item time").first).to_have_text(re.compile(r"^\d\d:\d\d$"))
    shot("activity")
    items.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Evaluations", exact=True)).to_be_visible()
    assert page.url.endswith(f"/runs/{ours.pk}/evaluations/")
    expect(page.get_by_text("No evaluations yet.")).to_be_visible()
    expect(page.locator("#eval-form")).to_have_count(0)  # a viewer sees results but cannot queue
