"""Studies: the list, the detail page with its paper-style table and significance, baseline, exports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from django.urls import reverse

from webapp.models import Activity, EvalResult, Evaluation, MetricPoint, Run, Study
from webapp.views import studies as studies_view

pytestmark = pytest.mark.django_db

K = 4  # samples per question


def evaluate(
    run: Run,
    benchmark: str,
    correct: Sequence[int],
    *,
    mode: str = "normal",
    step: int = 100,
    entropy: float = 0.5,
    status: str = "succeeded",
) -> Evaluation:
    """An evaluation whose question i has ``correct[i]`` of its K samples right."""
    metrics = {"accuracy": sum(correct) / (K * len(correct)), "entropy_bits": entropy}
    ev = Evaluation.objects.create(run=run, step=step, benchmark=benchmark, mode=mode, status=status, metrics=metrics)
    EvalResult.objects.bulk_create(
        [
            EvalResult(evaluation=ev, question_id=f"q{q}", index=i, response="…", score=float(i < c), length=10)
            for q, c in enumerate(correct)
            for i in range(K)
        ]
    )
    return ev


@pytest.fixture
def study(project: Any, alice: Any, make_run: Callable[..., Run]) -> Study:
    """GRPO vs Policy Split, two seeds each; the first GRPO seed is the baseline."""
    study = Study.objects.create(
        project=project,
        name="ps_vs_grpo 100%",
        factors={"algorithm": ["grpo", "policy_split"], "seed": [1, 2]},
        created_by=alice,
    )
    for algorithm in ("grpo", "policy_split"):
        for seed in (1, 2):
            run = make_run(name=f"{algorithm} s{seed}", algorithm=algorithm, seed=seed, status="succeeded")
            run.study = study
            run.summary = {"normal/accuracy": 0.5 if algorithm == "grpo" else 0.6}
            run.save()
            MetricPoint.objects.create(run=run, key="normal/accuracy", step=1, value=run.summary["normal/accuracy"])
    study.baseline = study.runs.order_by("id").first()
    study.save()
    return study


def runs_of(study: Study) -> dict[str, Run]:
    return {r.name: r for r in study.runs.all()}


@pytest.fixture
def evaluated(study: Study) -> Study:
    """40 MATH questions: GRPO solves 20, Policy Split all 40 (p < 0.01); on 8 AIME questions they tie."""
    runs = runs_of(study)
    for seed in (1, 2):
        evaluate(runs[f"grpo s{seed}"], "MATH-500", [K] * 20 + [0] * 20, entropy=0.30 + seed / 100)
        evaluate(runs[f"grpo s{seed}"], "AIME-24/25", [2] * 8, entropy=0.35)
        evaluate(runs[f"policy_split s{seed}"], "MATH-500", [K] * 40, entropy=0.6)
        evaluate(runs[f"policy_split s{seed}"], "AIME-24/25", [2] * 8, entropy=0.7)
        evaluate(runs[f"policy_split s{seed}"], "MATH-500", [K] * 30 + [0] * 10, mode="he", entropy=0.9)
        evaluate(runs[f"policy_split s{seed}"], "AIME-24/25", [1] * 8, mode="he", entropy=1.1)
    # The untrained model, evaluated once (step 0).
    evaluate(runs["grpo s1"], "MATH-500", [K] * 10 + [0] * 30, step=0, entropy=0.2)
    evaluate(runs["grpo s1"], "AIME-24/25", [0] * 8, step=0, entropy=0.3)
    return study


def detail(study: Study, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("webapp-study-detail", args=[study.pk]) + ("?" + query if query else "")


# --- list ------------------------------------------------------------------------------------------------


def test_the_list_shows_each_study_with_its_progress(client_for: Any, vera: Any, study: Study) -> None:
    response = client_for(vera).get(reverse("webapp-study-list", args=[study.project_id]))
    assert response.status_code == 200
    (row,) = response.context["studies"]
    assert (row.n_runs, row.n_done, row.n_active) == (4, 4, 0)
    assert b"ps_vs_grpo 100%" in response.content and b"4/4 done" in response.content


def test_the_list_counts_and_excludes_runs_as_the_study_page_does(client_for: Any, vera: Any, study: Study) -> None:
    runs = runs_of(study)
    Run.objects.filter(pk=runs["grpo s2"].pk).update(status="failed")  # excluded by default
    Run.objects.filter(pk=runs["policy_split s2"].pk).update(status="cancelled")
    study.run_choices = {str(runs["policy_split s2"].pk): "include", str(runs["policy_split s1"].pk): "exclude"}
    study.save()
    client = client_for(vera)
    listed = client.get(reverse("webapp-study-list", args=[study.project_id]))
    ((_, counts),) = listed.context["rows"]
    assert (counts.counted, counts.excluded) == (2, 2)
    assert "2 runs counted · <span" in listed.content.decode()
    assert b'data-testid="excluded-count">2 excluded</span>' in listed.content
    page = client.get(detail(study)).content.decode()
    assert "2 runs counted in" in page and 'data-testid="excluded-count">2 excluded</span>' in page


def test_the_list_says_nothing_is_excluded_when_every_run_counts(client_for: Any, vera: Any, study: Study) -> None:
    body = client_for(vera).get(reverse("webapp-study-list", args=[study.project_id])).content.decode()
    assert "4 runs counted" in body and "excluded" not in body


def test_the_list_requires_login_and_hides_other_teams(client: Any, client_for: Any, eve: Any, study: Study) -> None:
    url = reverse("webapp-study-list", args=[study.project_id])
    assert client.get(url).status_code == 302
    assert client_for(eve).get(url).status_code == 404


def test_viewers_do_not_get_the_launch_button(client_for: Any, vera: Any, bob: Any, study: Study) -> None:
    url = reverse("webapp-study-list", args=[study.project_id])
    assert b"New study (grid)" not in client_for(vera).get(url).content
    assert b"New study (grid)" in client_for(bob).get(url).content


# --- detail ----------------------------------------------------------------------------------------------


def test_outsiders_get_404_on_the_study_page(client_for: Any, eve: Any, study: Study) -> None:
    assert client_for(eve).get(detail(study)).status_code == 404


def test_the_page_shows_factors_runs_and_curves_grouped_by_the_varied_factor(
    client_for: Any, vera: Any, study: Study
) -> None:
    client = client_for(vera)
    response = client.get(detail(study))
    assert response.status_code == 200
    sv = response.context["sv"]
    assert sv.group_fields == ["algorithm"]
    assert [g.label for g in sv.groups] == ["GRPO", "Policy Split"]
    assert b"traces" not in response.content  # the page's script fetches the chart data
    traces = client.get(response.context["charts_url"]).json()["charts"][0]["traces"]
    assert [t["name"] for t in traces] == ["GRPO", "Policy Split"]
    assert traces[0]["band"] is not None  # two seeds: a band
    content = response.content.decode()
    for name in ("grpo s1", "grpo s2", "policy_split s1", "policy_split s2"):
        assert name in content
    assert "No finished evaluations yet" in content


def test_the_final_metrics_table_compares_groups_with_the_baseline_group(
    client_for: Any, vera: Any, study: Study
) -> None:
    table = client_for(vera).get(detail(study)).context["sv"].final
    grpo, ps = table.rows
    assert grpo.is_baseline
    assert ps.cells[0].delta == pytest.approx(0.1) and ps.cells[0].tone == "pos"


def test_the_paper_table_has_acc_ent_per_benchmark_an_average_and_an_he_row(
    client_for: Any, vera: Any, evaluated: Study
) -> None:
    response = client_for(vera).get(detail(evaluated))
    paper = response.context["sv"].paper
    assert paper.benchmarks == ["MATH-500", "AIME-24/25"]  # the paper's column order
    assert [r.label for r in paper.rows] == ["Original", "GRPO", "Policy Split", "+ HE prompt"]
    original, grpo, ps, he = paper.rows
    assert [c.acc for c in grpo.cells] == pytest.approx([50.0, 50.0])
    assert grpo.cells[0].ent == pytest.approx(0.315)  # mean of the seeds' 0.31 and 0.32
    assert grpo.avg_acc == pytest.approx(50.0)
    assert [c.acc for c in ps.cells] == pytest.approx([100.0, 50.0]) and ps.avg_acc == pytest.approx(75.0)
    assert [c.acc for c in he.cells] == pytest.approx([75.0, 25.0]) and he.avg_ent == pytest.approx(1.0)
    assert [c.acc for c in original.cells] == pytest.approx([25.0, 0.0])
    assert ps.best and not grpo.best
    content = response.content.decode()
    assert content.count("Acc / Ent") == 3  # two benchmarks and the average
    assert "Average" in content and "+ HE prompt" in content
    assert '<span class="pt-acc">100.00</span><sup class="sig">‡</sup>' in content


def test_significance_is_tested_against_the_baseline_and_marked(client_for: Any, vera: Any, evaluated: Study) -> None:
    paper = client_for(vera).get(detail(evaluated)).context["sv"].paper
    _, grpo, ps, he = paper.rows
    assert grpo.is_baseline and grpo.test is None
    # MATH: +50 points on 40 questions, all one way: p < 0.01. AIME: identical: p = 1, no mark.
    assert ps.cells[0].test.p_value < 0.01 and ps.cells[0].mark == "‡"
    assert ps.cells[1].test.p_value == 1.0 and ps.cells[1].mark == ""
    # The row-level test weighs the two benchmarks equally: Δ = (50 + 0) / 2 points.
    assert ps.delta == pytest.approx(25.0)
    assert ps.ci[0] <= 25.0 <= ps.ci[1]
    assert ps.test.p_value < 0.01 and ps.mark == "‡"
    assert he.test is not None and he.test.test == "permutation"


def test_the_page_states_which_test_is_used_with_a_legend(client_for: Any, vera: Any, evaluated: Study) -> None:
    content = client_for(vera).get(detail(evaluated)).content.decode()
    assert "paired sign-flip permutation test on per-question mean accuracy" in content
    assert '<sup class="sig">†</sup> p &lt; 0.05, <sup class="sig">‡</sup> p &lt; 0.01' in content
    assert 'class="active">Permutation (sign-flip)</a>' in content


def test_mcnemar_can_be_chosen_instead(client_for: Any, vera: Any, evaluated: Study) -> None:
    response = client_for(vera).get(detail(evaluated, test="mcnemar"))
    ps = response.context["sv"].paper.rows[2]
    # MATH: 20 questions only Policy Split solves (majority of 4), none the other way: p = 2 · 0.5^20.
    assert ps.cells[0].test.test == "mcnemar"
    assert ps.cells[0].test.p_value == pytest.approx(2 * 0.5**20)
    assert "exact McNemar test on per-question correctness" in response.content.decode()


def test_seeds_are_averaged_per_question_before_pairing(client_for: Any, vera: Any, study: Study) -> None:
    runs = runs_of(study)
    evaluate(runs["grpo s1"], "MATH-500", [4, 0])
    evaluate(runs["grpo s2"], "MATH-500", [2, 2])
    evaluate(runs["policy_split s1"], "MATH-500", [4, 4])
    paper = client_for(vera).get(detail(study)).context["sv"].paper
    grpo = paper.rows[0]
    assert grpo.questions == {("MATH-500", "q0"): 0.75, ("MATH-500", "q1"): 0.25}
    assert grpo.n_runs == 2
    assert paper.rows[1].n_runs == 1  # the second Policy Split seed has no evaluation yet
    assert paper.rows[1].test.n == 2


def test_unfinished_evaluations_and_a_missing_baseline_give_no_significance(
    client_for: Any, vera: Any, study: Study
) -> None:
    runs = runs_of(study)
    evaluate(runs["grpo s1"], "MATH-500", [4, 0])
    evaluate(runs["policy_split s1"], "MATH-500", [4, 4], status="running")
    Study.objects.filter(pk=study.pk).update(baseline=None)
    response = client_for(vera).get(detail(study))
    paper = response.context["sv"].paper
    assert [r.label for r in paper.rows] == ["GRPO"]
    assert not paper.has_baseline
    assert b"Set a baseline run to see deltas" in response.content


def test_a_baseline_without_evaluations_is_explained(client_for: Any, vera: Any, study: Study) -> None:
    evaluate(runs_of(study)["policy_split s1"], "MATH-500", [4, 4])
    response = client_for(vera).get(detail(study))
    assert not response.context["sv"].paper.has_baseline
    assert b"The baseline, GRPO, has no finished evaluations yet" in response.content


def test_the_review_thread_is_optional(
    client_for: Any, vera: Any, study: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(vera)
    monkeypatch.setattr(studies_view, "REVIEW_PARTIAL", "webapp/partials/no_such_partial.html")
    response = client.get(detail(study))
    assert response.status_code == 200 and response.context["has_review"] is False


# --- baseline --------------------------------------------------------------------------------------------


def test_members_set_the_baseline(client_for: Any, bob: Any, study: Study) -> None:
    target = runs_of(study)["policy_split s2"]
    response = client_for(bob).post(reverse("webapp-study-baseline", args=[study.pk]), {"run": target.pk})
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.baseline == target
    activity = Activity.objects.get()
    assert activity.verb == "set the study baseline to"
    assert activity.target == "policy_split s2 (ps_vs_grpo 100%)"


def test_viewers_cannot_set_the_baseline(client_for: Any, vera: Any, study: Study) -> None:
    target = runs_of(study)["policy_split s2"]
    response = client_for(vera).post(reverse("webapp-study-baseline", args=[study.pk]), {"run": target.pk})
    assert response.status_code == 403
    study.refresh_from_db()
    assert study.baseline is not None and study.baseline.name == "grpo s1"


def test_outsiders_cannot_set_the_baseline(client_for: Any, eve: Any, study: Study) -> None:
    target = runs_of(study)["policy_split s2"]
    assert (
        client_for(eve).post(reverse("webapp-study-baseline", args=[study.pk]), {"run": target.pk}).status_code == 404
    )


def test_the_baseline_must_be_a_run_of_the_study(
    client_for: Any, bob: Any, study: Study, make_run: Callable[..., Run]
) -> None:
    stranger = make_run(name="not in the study")
    url = reverse("webapp-study-baseline", args=[study.pk])
    assert client_for(bob).post(url, {"run": stranger.pk}).status_code == 404
    assert client_for(bob).post(url, {"run": "x"}).status_code == 400


# --- which runs count ------------------------------------------------------------------------------------


def _fail(run: Run, status: str = "failed") -> Run:
    run.status = status
    run.summary = {"normal/accuracy": 0.0}  # what a run that died early reports
    run.save(update_fields=["status", "summary"])
    MetricPoint.objects.filter(run=run, key="normal/accuracy").update(value=0.0)
    return run


def inclusion(study: Study, run: Run) -> str:
    return reverse("webapp-study-run-inclusion", args=[study.pk, run.pk])


@pytest.mark.parametrize("status", ["failed", "cancelled", "lost"])
def test_failed_cancelled_and_lost_runs_are_left_out_of_the_aggregates_by_default(
    client_for: Any, vera: Any, study: Study, status: str
) -> None:
    _fail(runs_of(study)["policy_split s2"], status)
    response = client_for(vera).get(detail(study))
    sv = response.context["sv"]
    ps = sv.final.rows[1]
    assert ps.group.label == "Policy Split" and ps.group.seeds == [1]  # not "2 runs · seeds 1, 2"
    assert ps.cells[0].value == pytest.approx(0.6) and ps.cells[0].n == 1  # the failed 0.0 is not averaged in
    traces = client_for(vera).get(response.context["charts_url"]).json()["charts"][0]["traces"]
    assert traces[1]["band"] is None  # one counted seed: no band
    content = response.content.decode()
    assert "3 runs counted in 2 groups" in content and "1 excluded" in content
    assert f"excluded: {status}" in content  # the runs table still lists it, marked


def test_a_member_includes_a_failed_run_by_hand_and_the_choice_is_stored_with_the_study(
    client_for: Any, bob: Any, study: Study
) -> None:
    failed = _fail(runs_of(study)["policy_split s2"])
    client = client_for(bob)
    assert client.post(inclusion(study, failed), {"include": "1"}).status_code == 302
    study.refresh_from_db()
    assert study.run_choices == {str(failed.pk): "include"}
    response = client.get(detail(study))
    assert response.context["sv"].final.rows[1].cells[0].value == pytest.approx(0.3)  # mean of 0.6 and 0.0
    assert "included by hand (failed)" in response.content.decode()
    # It died before logging anything: the cell says it averages one run of two.
    MetricPoint.objects.filter(run=failed).delete()
    failed.summary = {}
    failed.save(update_fields=["summary"])
    assert "n=1 of 2" in client.get(detail(study)).content.decode()
    client.post(inclusion(study, failed), {"include": "0"})  # back to the default: nothing stored
    study.refresh_from_db()
    assert study.run_choices == {}
    assert Activity.objects.filter(verb="excluded from the study", target__startswith=failed.name).exists()


def test_a_member_excludes_a_succeeded_run_from_the_tables(client_for: Any, bob: Any, evaluated: Study) -> None:
    outlier = runs_of(evaluated)["grpo s2"]
    client = client_for(bob)
    client.post(inclusion(evaluated, outlier), {"include": "0"})
    response = client.get(detail(evaluated))
    sv = response.context["sv"]
    assert outlier not in sv.runs and [m.run for m in sv.members if not m.included] == [outlier]
    grpo = sv.paper.rows[1]
    assert grpo.label == "GRPO" and [c.n_evals for c in grpo.cells] == [1, 1] and grpo.n_runs == 1
    assert "excluded by hand" in response.content.decode()


def test_viewers_and_outsiders_cannot_change_which_runs_count(
    client_for: Any, vera: Any, eve: Any, study: Study
) -> None:
    run = runs_of(study)["grpo s1"]
    assert client_for(vera).post(inclusion(study, run), {"include": "0"}).status_code == 403
    assert client_for(eve).post(inclusion(study, run), {"include": "0"}).status_code == 404
    study.refresh_from_db()
    assert study.run_choices == {}


def test_the_paper_table_states_n_per_cell(client_for: Any, vera: Any, evaluated: Study) -> None:
    # The second Policy Split seed was never evaluated on AIME: that cell averages one run.
    Evaluation.objects.filter(run=runs_of(evaluated)["policy_split s2"], benchmark="AIME-24/25", mode="normal").delete()
    client = client_for(vera)
    response = client.get(detail(evaluated))
    ps = response.context["sv"].paper.rows[2]
    assert ps.label == "Policy Split" and [c.n_evals for c in ps.cells] == [2, 1]
    content = response.content.decode()
    assert content.count('<span class="pt-n"') == 6 and "n=1</span>" in content  # 3 trained rows × 2 benchmarks
    md = client.get(export(evaluated, table="paper", format="md")).content.decode()
    assert "| Policy Split (2 seeds) | 100.00‡ / 0.60 | 50.00 / 0.70 (n=1) |" in md
    csv_text = client.get(export(evaluated, table="paper", format="csv")).content.decode()
    assert "MATH-500 n" in csv_text.splitlines()[0]


# --- export ----------------------------------------------------------------------------------------------


def export(study: Study, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("webapp-study-export", args=[study.pk]) + "?" + query


def test_the_paper_table_exports_as_latex_with_escaping(client_for: Any, vera: Any, evaluated: Study) -> None:
    response = client_for(vera).get(export(evaluated, table="paper", format="tex"))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="ps_vs_grpo-100-paper.tex"'
    tex = response.content.decode()
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\caption{ps\_vs\_grpo 100\%: Evaluation results" in tex
    assert r"Policy Split (2 seeds) & 100.00\textsuperscript{\ddag} / 0.60 & 50.00 / 0.70" in tex
    assert r"+ HE prompt & 75.00\textsuperscript{\ddag} / 0.90" in tex


def test_the_paper_table_exports_as_markdown_and_csv(client_for: Any, vera: Any, evaluated: Study) -> None:
    client = client_for(vera)
    md = client.get(export(evaluated, table="paper", format="md")).content.decode()
    assert "| Method | MATH-500 | AIME-24/25 | Average | Δ Acc [95% CI] | p |" in md
    assert "| GRPO (2 seeds) | 50.00 / 0.32 | 50.00 / 0.35 | 50.00 / 0.33 | baseline | – |" in md
    csv_text = client.get(export(evaluated, table="paper", format="csv")).content.decode()
    assert csv_text.splitlines()[0].startswith("method,row,runs,MATH-500 acc,MATH-500 ent,MATH-500 p,")
    assert "Policy Split + HE prompt,he,2," in csv_text


def test_the_final_metrics_table_exports_too(client_for: Any, vera: Any, study: Study) -> None:
    response = client_for(vera).get(export(study, table="final", format="md", keys="normal/accuracy"))
    md = response.content.decode()
    assert "| GRPO (baseline) | 2 | 0.5 ± 0 |" in md
    assert "| Policy Split | 2 | 0.6 ± 0 (+0.1) |" in md


def test_export_rejects_bad_parameters_and_empty_tables(client_for: Any, vera: Any, study: Study) -> None:
    client = client_for(vera)
    assert client.get(export(study, table="paper", format="docx")).status_code == 400
    assert client.get(export(study, table="nope", format="csv")).status_code == 400
    assert client.get(export(study, table="paper", format="csv")).status_code == 400  # no evaluations yet


def test_outsiders_cannot_export(client_for: Any, eve: Any, evaluated: Study) -> None:
    assert client_for(eve).get(export(evaluated, table="paper", format="csv")).status_code == 404


def test_the_study_page_runs_a_bounded_number_of_queries(
    client_for: Any, vera: Any, evaluated: Study, django_assert_max_num_queries: Any
) -> None:
    client = client_for(vera)
    with django_assert_max_num_queries(25):
        client.get(detail(evaluated))


def _study_of(project: Any, alice: Any, runs: Sequence[Run], name: str) -> Study:
    study = Study.objects.create(
        project=project, name=name, factors={"algorithm": ["grpo", "policy_split"]}, created_by=alice
    )
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(study=study)
    return study


def test_the_study_charts_run_the_same_queries_for_any_number_of_runs_and_keys(
    client_for: Any, vera: Any, alice: Any, project: Any, make_run: Callable[..., Run]
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from webapp.worker import ingest

    keys = ["normal/accuracy", "he/accuracy", "train/reward", "normal/entropy", "he/entropy"]
    runs = [
        make_run(name=f"r{i}", algorithm=("grpo", "policy_split")[i % 2], seed=i, status="succeeded") for i in range(12)
    ]
    for i, run in enumerate(runs):  # long lines (rollups) and short ones (raw points) in both studies
        for key in keys:
            ingest.metrics_record([(run.pk, key, s, float((i + s) % 5)) for s in range(1500 if i % 3 else 40)])
    small, large = _study_of(project, alice, runs[:2], "small"), _study_of(project, alice, runs[2:], "large")
    client = client_for(vera)
    counts = []
    for study, wanted in ((small, keys[:1]), (large, keys)):
        url = reverse("webapp-study-charts", args=[study.pk]) + "?keys=" + ",".join(wanted)
        with CaptureQueriesContext(connection) as ctx:
            charts = client.get(url).json()["charts"]
        assert [c["key"] for c in charts] == wanted and all(c["traces"] for c in charts)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]  # 2 runs × 1 key and 10 runs × 5 keys


# --- the summary of each run ------------------------------------------------------------------------------


def _noisy_last_step(study: Study) -> None:
    """Each GRPO run's accuracy 0.25 at steps 2–4, then one noisy 0 at step 5."""
    for run in study.runs.filter(algorithm="grpo"):
        for step, value in ((2, 0.25), (3, 0.25), (4, 0.25), (5, 0.0)):
            MetricPoint.objects.create(run=run, key="normal/accuracy", step=step, value=value)
        run.summary = {"normal/accuracy": 0.0}  # the last logged value, as ingestion keeps it
        run.save(update_fields=["summary"])


def test_the_final_metrics_default_to_the_mean_of_the_last_five_steps_and_say_so(
    client_for: Any, vera: Any, study: Study
) -> None:
    _noisy_last_step(study)
    response = client_for(vera).get(detail(study) + "?keys=normal/accuracy")
    grpo = response.context["sv"].final.rows[0]
    assert grpo.cells[0].value == pytest.approx((0.5 + 3 * 0.25 + 0.0) / 5)  # not the last step's 0
    assert "Final metrics (mean of the last 5 logged steps of each run, mean ± std across seeds)" in (
        response.content.decode()
    )
    md = client_for(vera).get(export(study, table="final", format="md", keys="normal/accuracy")).content.decode()
    assert r"**ps\_vs\_grpo 100%: Final metrics (mean of the last 5 logged steps of each run" in md
    tex = client_for(vera).get(export(study, table="final", format="tex", keys="normal/accuracy")).content.decode()
    assert r"Final metrics (mean of the last 5 logged steps of each run" in tex


def test_a_member_sets_the_studys_summary_and_the_last_value_stays_an_explicit_option(
    client_for: Any, bob: Any, vera: Any, study: Study
) -> None:
    _noisy_last_step(study)
    url = reverse("webapp-study-summary", args=[study.pk])
    assert client_for(vera).post(url, {"summary": "last", "k": "5"}).status_code == 403
    assert client_for(bob).post(url, {"summary": "mean_last", "k": "0"}).status_code == 400
    assert client_for(bob).post(url, {"summary": "mean_last", "k": "2"}).status_code == 302
    study.refresh_from_db()
    assert (study.summary_kind, study.summary_k) == ("mean_last", 2)
    page = client_for(bob).get(detail(study) + "?keys=normal/accuracy")
    assert page.context["sv"].final.rows[0].cells[0].value == pytest.approx(0.125)
    client_for(bob).post(url, {"summary": "last", "k": "2"})
    page = client_for(bob).get(detail(study) + "?keys=normal/accuracy")
    assert page.context["sv"].final.rows[0].cells[0].value == pytest.approx(0.0)
    assert "Final metrics (last logged value of each run" in page.content.decode()
    assert Activity.objects.filter(verb="summarised runs by the", target__startswith="last logged value").exists()


def test_the_paper_table_says_it_summarises_held_out_evaluations(client_for: Any, vera: Any, evaluated: Study) -> None:
    page = client_for(vera).get(detail(evaluated)).content.decode()
    assert "held-out evaluation of each run&#x27;s latest evaluated checkpoint" in page
    md = client_for(vera).get(export(evaluated, table="paper", format="md")).content.decode()
    assert "Evaluation results (Acc / Ent; held-out evaluation of each run's latest evaluated checkpoint)" in md
