"""Evaluations: queueing from the run's page, permissions, the worker-side execution and storage,
the final evaluation of a finished run, and the pages (tables, analysis, escaped responses)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.workers import Broker
from trainer.registry import resolve
from webapp.evaluations import runner, selectors
from webapp.evaluations import services as service
from webapp.models import Checkpoint, EvalResult, EvalStatus, Evaluation, Run
from webapp.review.reports import question_accuracy
from webapp.services import ServiceError
from webapp.tasks import evaluate_run_checkpoint
from webapp.worker.execution import run_dir, worker_identity

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Path) -> None:
    settings.PSL_DATA_DIR = FIXTURES
    settings.PSL_RUNS_DIR = tmp_path / "runs"
    settings.JUDGE_API_URL = ""


@pytest.fixture
def run(make_run: Callable[..., Run], tmp_path: Path) -> Run:
    """A finished Policy Split run with a checkpoint folder at step 2."""
    run = make_run(name="ps tiny", status="succeeded", steps=2, task="arith", max_new_tokens=16)
    folder = tmp_path / "ckpt" / "step_000002"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    Checkpoint.objects.create(run=run, step=2, path=str(folder))
    run.last_checkpoint_step = 2
    run.save()
    return run


@pytest.fixture
def model_checkpoint(run: Run) -> Path:
    """The run's checkpoint folder holds a real model (a copy of tiny-random) that the evaluator loads."""
    folder = Path(run.checkpoints.get().path)
    shutil.copytree(resolve("tiny-random"), folder, dirs_exist_ok=True)
    return folder


def url(run: Run) -> str:
    return reverse("webapp-run-evaluations", args=[run.pk])


FORM = {
    "step": "2",
    "benchmarks": ["math500", "arith"],
    "modes": ["normal", "he"],
    "k": "4",
    "limit": "2",
    "max_new_tokens": "16",
    "temperature": "0.6",
    "top_k": "20",
    "top_p": "0.95",
}


# --- permissions and the form ------------------------------------------------------------------------


def test_viewers_see_the_page_without_the_form(client_for: Any, vera: Any, run: Run) -> None:
    response = client_for(vera).get(url(run))
    assert response.status_code == 200
    assert b"Evaluate a checkpoint" not in response.content
    assert b"No evaluations yet" in response.content


def test_viewers_cannot_queue_evaluations(client_for: Any, vera: Any, run: Run) -> None:
    assert client_for(vera).post(url(run), FORM).status_code == 403
    assert not Evaluation.objects.exists()


def test_outsiders_get_404(client_for: Any, eve: Any, run: Run) -> None:
    client = client_for(eve)
    assert client.get(url(run)).status_code == 404
    assert client.post(url(run), FORM).status_code == 404
    assert client.get(reverse("webapp-run-evaluations-status", args=[run.pk])).status_code == 404


def test_members_queue_one_task_per_checkpoint_after_commit(
    client_for: Any, bob: Any, run: Run, broker: Broker, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(bob)
    form_page = client.get(url(run))
    assert b"Evaluate a checkpoint" in form_page.content and b"untrained base model" in form_page.content
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(url(run), FORM)
    assert response.status_code == 302
    assert broker.messages(run.queue) == []  # not before commit
    for callback in callbacks:
        callback()
    evals = list(Evaluation.objects.order_by("pk"))
    assert [(e.benchmark, e.mode, e.step, e.status) for e in evals] == [
        ("math500", "normal", 2, "queued"),
        ("math500", "he", 2, "queued"),
        ("arith", "normal", 2, "queued"),
        ("arith", "he", 2, "queued"),
    ]
    assert evals[0].settings == {
        "k": 4,
        "limit": 2,
        "max_new_tokens": 16,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
        "judge": False,
    }
    (message,) = broker.messages(run.queue)
    assert (message.task, message.args, message.kwargs) == (evaluate_run_checkpoint.name, [[e.pk for e in evals]], {})


def test_it_names_the_file_a_missing_benchmark_needs(
    client_for: Any, bob: Any, run: Run, settings: Any, tmp_path: Path
) -> None:
    settings.PSL_DATA_DIR = tmp_path / "empty"
    response = client_for(bob).post(url(run), {**FORM, "benchmarks": ["math500"]})
    assert response.status_code == 400
    assert str(tmp_path / "empty" / "math500" / "test.jsonl").encode() in response.content
    assert not Evaluation.objects.exists()


def test_the_step_must_be_a_checkpoint_on_disk(client_for: Any, bob: Any, run: Run) -> None:
    response = client_for(bob).post(url(run), {**FORM, "step": "1"})
    assert response.status_code == 400 and not Evaluation.objects.exists()
    Path(run.checkpoints.get().path, "config.json").unlink()  # pruned
    assert selectors.checkpoint_steps(run) == [0]
    with pytest.raises(ServiceError, match="no longer on disk") as refused:
        service.model_for_step(run, 2)
    assert f"run:{run.pk}@2" in str(refused.value) and run.checkpoints.get().path not in str(refused.value)
    assert service.model_for_step(run, 0) == "tiny-random"


def test_it_refuses_to_queue_what_is_already_running_and_replaces_what_finished(run: Run) -> None:
    request = service.EvalRequest(step=2, benchmarks=("math500",), modes=("normal",), k=2)
    (ev,) = service.evaluations_create(run=run, request=request, enqueue=False)
    with pytest.raises(ServiceError, match="already queued or running"):
        service.evaluations_create(run=run, request=request, enqueue=False)
    Evaluation.objects.filter(pk=ev.pk).update(status=EvalStatus.SUCCEEDED)
    EvalResult.objects.create(evaluation=ev, question_id="q", index=0, response="x", score=1.0, length=1)
    (again,) = service.evaluations_create(run=run, request=request, enqueue=False)
    assert again.status == EvalStatus.QUEUED and not EvalResult.objects.exists()
    assert Evaluation.objects.count() == 1


def test_the_judge_needs_an_endpoint(client_for: Any, bob: Any, run: Run, settings: Any) -> None:
    page = client_for(bob).get(url(run))
    assert b"not configured (JUDGE_API_URL)" in page.content
    with pytest.raises(ServiceError, match="no LLM judge"):
        service.evaluations_create(
            run=run, request=service.EvalRequest(step=0, benchmarks=("creative",), judge=True), enqueue=False
        )


def test_the_judge_key_travels_in_the_environment_only(settings: Any, tmp_path: Path) -> None:
    settings.JUDGE_API_URL, settings.JUDGE_API_KEY = "http://judge.local/v1", "sk-secret"
    cmd = runner.evaluation_command("m", ["creative"], ["he"], {"k": 2, "judge": True}, tmp_path / "r.json")
    assert "--no-judge" not in cmd and "sk-secret" not in " ".join(cmd)
    env = runner.evaluator_env(judge=True)
    assert env["JUDGE_API_KEY"] == "sk-secret" and env["JUDGE_API_URL"] == "http://judge.local/v1"
    assert "JUDGE_API_KEY" not in runner.evaluator_env(judge=False)
    assert "--no-judge" in runner.evaluation_command("m", ["arith"], ["he"], {"k": 2}, tmp_path / "r.json")


# --- the end-of-training evaluation -----------------------------------------------------------------------


def test_a_finished_run_is_evaluated_on_its_task_at_the_last_checkpoint(
    run: Run, broker: Broker, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        evals = service.evaluations_schedule_final(run)
    assert sorted((e.benchmark, e.mode, e.step) for e in evals) == [("arith", "he", 2), ("arith", "normal", 2)]
    assert evals[0].settings["k"] == 4 and evals[0].settings["limit"] == 64
    assert evals[0].settings["max_new_tokens"] == 16  # the run's own
    (message,) = broker.messages(run.queue)
    assert (message.task, message.args) == (evaluate_run_checkpoint.name, [[e.pk for e in evals]])
    assert service.evaluations_schedule_final(run) == []  # idempotent


def test_a_run_trained_on_arith_add_is_evaluated_on_ariths_held_out_split(
    run: Run, django_capture_on_commit_callbacks: Any
) -> None:
    run.config = {**run.config, "task": "arith-add"}
    with django_capture_on_commit_callbacks(execute=False):
        evals = service.evaluations_schedule_final(run)
    assert sorted((e.benchmark, e.mode) for e in evals) == [("arith", "he"), ("arith", "normal")]


def test_unfinished_runs_and_runs_without_a_benchmark_task_are_not_evaluated(run: Run, settings: Any) -> None:
    run.status = "failed"
    assert service.evaluations_schedule_final(run) == []
    run.status = "succeeded"
    run.config = {**run.config, "task": "file:/data/mine.jsonl"}
    assert service.evaluations_schedule_final(run) == []
    settings.PSL_EVAL_FINAL = {"benchmarks": ["math500"], "include_base": True, "modes": ["he"]}
    evals = service.evaluations_schedule_final(run)
    assert sorted((e.benchmark, e.mode, e.step) for e in evals) == [("math500", "he", 0), ("math500", "he", 2)]


# --- execution in the worker: the real evaluator child process on tiny-random --------------------------


def report(mode: str, scores: list[list[float]], response: str = "The answer is 5.") -> dict[str, Any]:
    """One (benchmark, mode) report as trainer.evaluation.evaluate writes it: the input of evaluation_store."""
    samples = [
        {
            "question_id": f"q{q}",
            "index": i,
            "response": response,
            "score": s,
            "length": 5,
            "entropy_bits": 0.5,
            "kl": 0.01,
            "truncated": False,
            "judge": None,
            "judge_error": "",
        }
        for q, row in enumerate(scores)
        for i, s in enumerate(row)
    ]
    flat = [s for row in scores for s in row]
    return {
        "mode": mode,
        "samples": samples,
        "metrics": {
            "accuracy": sum(flat) / len(flat),
            "entropy_bits": 0.5,
            "graded": True,
            "kl_to_other": 0.01,
            "pass_at_k": {"1": sum(flat) / len(flat)},
            "accuracy_ci": [0.1, 0.9],
        },
    }


def queued(run: Run, benchmarks: tuple[str, ...] = ("math500",)) -> list[Evaluation]:
    return service.evaluations_create(
        run=run,
        request=service.EvalRequest(step=2, benchmarks=benchmarks, k=2, limit=2, max_new_tokens=8),
        enqueue=False,
    )


def test_storing_a_report_writes_the_samples_and_metrics_the_study_table_reads(run: Run) -> None:
    normal, he = queued(run)
    service.evaluation_store(normal, report("normal", [[1.0, 1.0], [0.0, 1.0]]), title="MATH-500")
    service.evaluation_store(he, report("he", [[0.0, 0.0], [1.0, 0.0]], response="nul\x00byte <b>"))
    assert normal.status == he.status == EvalStatus.SUCCEEDED
    assert normal.metrics["accuracy"] == 0.75 and normal.metrics["title"] == "MATH-500"
    assert EvalResult.objects.filter(evaluation=normal).count() == 4
    assert EvalResult.objects.filter(evaluation=he)[0].response == "nul\ufffdbyte <b>"  # PostgreSQL has no NUL
    assert question_accuracy([normal.pk, he.pk]) == {normal.pk: {"q0": 1.0, "q1": 0.5}, he.pk: {"q0": 0.0, "q1": 0.5}}


@pytest.mark.slow
def test_the_celery_task_evaluates_the_checkpoint_and_stores_what_the_study_table_reads(
    run: Run, model_checkpoint: Path
) -> None:
    evals = queued(run)
    assert evaluate_run_checkpoint.run([e.pk for e in evals]) == "succeeded"
    normal, he = (Evaluation.objects.get(run=run, mode=m) for m in ("normal", "he"))
    assert normal.status == he.status == EvalStatus.SUCCEEDED, normal.error or he.error
    assert normal.settings["model"] == str(model_checkpoint) and normal.settings["host"] == worker_identity()
    folder = Path(normal.settings["folder"])
    assert f"loaded {model_checkpoint}" in (folder / "evaluate.log").read_text()  # the command named the checkpoint
    doc = json.loads((folder / "results.json").read_text())
    assert {key: doc["settings"][key] for key in ("k", "limit", "max_new_tokens", "modes")} == {
        "k": 2,
        "limit": 2,
        "max_new_tokens": 8,
        "modes": ["normal", "he"],
    }
    for ev in (normal, he):
        assert ev.metrics["title"] == "MATH-500" and set(ev.metrics["pass_at_k"]) == {"1", "2"}
        assert {"accuracy", "accuracy_ci", "entropy_bits", "kl_to_other", "unique_correct"} <= set(ev.metrics)
        rows = list(EvalResult.objects.filter(evaluation=ev))
        assert sorted((r.question_id, r.index) for r in rows) == sorted(
            (q["id"], i) for q in doc["benchmarks"]["math500"]["questions"] for i in range(2)
        )
        correct = {q: [r.score > 0.5 for r in rows if r.question_id == q] for q in {r.question_id for r in rows}}
        assert question_accuracy([ev.pk])[ev.pk] == {q: sum(c) / 2 for q, c in correct.items()}
        assert ev.metrics["accuracy"] == sum(r.score > 0.5 for r in rows) / 4


@pytest.mark.slow
def test_a_killed_evaluator_fails_its_evaluations_with_the_log_tail(
    run: Run, model_checkpoint: Path, settings: Any
) -> None:
    settings.PSL_EVAL_TIMEOUT_SECONDS = 1  # run_child kills the child's process group, as the OOM killer would
    evals = queued(run)
    assert runner.evaluations_execute([e.pk for e in evals]) == "failed"
    for ev in Evaluation.objects.all():
        assert ev.status == EvalStatus.FAILED and "exited with code -9" in ev.error
        assert "killed after 1 s (PSL_EVAL_TIMEOUT_SECONDS)" in ev.error
    assert not EvalResult.objects.exists()


@pytest.mark.slow
def test_one_failed_benchmark_does_not_fail_the_others(
    run: Run, model_checkpoint: Path, settings: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "math500", data / "math500")
    broken = data / "aime" / "aime24.jsonl"
    broken.parent.mkdir()
    broken.write_text("{not json\n")
    settings.PSL_DATA_DIR = data
    evals = queued(run, ("math500", "aime"))
    assert runner.evaluations_execute([e.pk for e in evals]) == "succeeded"
    status = dict(Evaluation.objects.values_list("benchmark", "status").distinct())
    assert status == {"math500": "succeeded", "aime": "failed"}
    assert EvalResult.objects.filter(evaluation__benchmark="math500").count() == 8  # 2 modes × 2 questions × k=2
    aime = Evaluation.objects.filter(benchmark="aime")[0]
    doc = json.loads(Path(aime.settings["folder"], "results.json").read_text())
    assert aime.error == doc["benchmarks"]["aime"]["error"]  # the evaluator's own message, not "exited with code 1"
    assert aime.error.startswith(f"ValueError: {broken}: row 1: invalid JSON")


def test_a_redelivered_task_skips_claimed_evaluations(run: Run) -> None:
    evals = queued(run)
    Evaluation.objects.update(status=EvalStatus.RUNNING)
    assert runner.evaluations_execute([e.pk for e in evals]) == "skipped"
    assert not (run_dir(run.pk) / "evaluations").exists()  # no evaluator was started
    assert set(Evaluation.objects.values_list("status", flat=True)) == {EvalStatus.RUNNING}


def test_the_claim_records_the_worker_and_a_first_heartbeat(run: Run) -> None:
    evals = queued(run)
    assert service.evaluations_claim([e.pk for e in evals], host="w1@host") == [e.pk for e in evals]
    assert service.evaluations_claim([e.pk for e in evals], host="w2@host") == []  # a duplicate wins nothing
    for ev in Evaluation.objects.all():
        assert (ev.status, ev.host) == (EvalStatus.RUNNING, "w1@host")
        assert ev.started_at is not None and ev.heartbeat_at == ev.started_at


def test_the_sweep_fails_running_evaluations_whose_heartbeat_went_stale(run: Run, settings: Any) -> None:
    settings.PSL_LOST_AFTER_SECONDS = 30
    stale, fresh = queued(run)
    service.evaluations_claim([stale.pk, fresh.pk], host="w1@host")
    Evaluation.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31))

    assert service.evaluations_sweep_lost(exclude=[stale.pk]) == []  # the caller runs it itself
    assert service.evaluations_sweep_lost() == [stale.pk]
    stale.refresh_from_db()
    assert stale.status == EvalStatus.FAILED and stale.finished_at is not None
    assert stale.error.startswith("lost: the worker w1@host stopped sending heartbeats")
    assert Evaluation.objects.get(pk=fresh.pk).status == EvalStatus.RUNNING


def test_a_running_evaluation_from_before_heartbeats_counts_from_its_creation(run: Run, settings: Any) -> None:
    settings.PSL_LOST_AFTER_SECONDS = 30
    (old, _) = queued(run)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Evaluation.objects.filter(pk=old.pk).update(status=EvalStatus.RUNNING, created_at=an_hour_ago)
    assert service.evaluations_sweep_lost() == [old.pk]


def test_a_heartbeat_takes_back_an_evaluation_swept_while_its_worker_could_not_reach_the_database(
    run: Run, settings: Any
) -> None:
    settings.PSL_LOST_AFTER_SECONDS = 30
    evals = queued(run)
    ids = [e.pk for e in evals]
    service.evaluations_claim(ids, host="w1@host")
    Evaluation.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    assert service.evaluations_sweep_lost() == ids

    service.evaluations_beat(ids, host="w2@host")  # not its worker: stays failed
    assert set(Evaluation.objects.values_list("status", flat=True)) == {EvalStatus.FAILED}
    service.evaluations_beat(ids, host="w1@host")
    assert set(Evaluation.objects.values_list("status", "error")) == {(EvalStatus.RUNNING, "")}
    assert service.evaluations_sweep_lost() == []


@pytest.mark.slow
def test_the_runner_beats_while_the_evaluator_runs(run: Run, model_checkpoint: Path, settings: Any) -> None:
    settings.PSL_HEARTBEAT_SECONDS = 1
    beats: list[int] = []
    real_beat = runner.evaluations_beat

    def beat(ids: list[int], *, host: str) -> None:
        beats.append(len(ids))
        real_beat(ids, host=host)

    evals = queued(run)
    with mock.patch.object(runner, "evaluations_beat", beat):
        assert runner.evaluations_execute([e.pk for e in evals], host="w1@host") == "succeeded"
    assert beats and set(beats) == {2}  # the evaluator takes seconds to load: at least one beat, for both rows
    assert {ev.host for ev in Evaluation.objects.all()} == {"w1@host"}


def test_the_celery_task_fails_evaluations_whose_checkpoint_was_pruned_meanwhile(run: Run) -> None:
    evals = queued(run)
    Path(run.checkpoints.get().path, "config.json").unlink()
    assert evaluate_run_checkpoint.run([e.pk for e in evals]) == "failed"
    for ev in Evaluation.objects.all():
        assert ev.status == EvalStatus.FAILED and "no longer on disk" in ev.error


# --- the pages ------------------------------------------------------------------------------------------


def evaluated(
    run: Run,
    mode: str,
    correct: list[int],
    *,
    k: int = 4,
    step: int = 2,
    response: str = "ok",
    benchmark: str = "math500",
) -> Evaluation:
    ev = Evaluation.objects.create(
        run=run,
        step=step,
        benchmark=benchmark,
        mode=mode,
        status="succeeded",
        settings={"k": k},
        metrics={
            "accuracy": sum(correct) / (k * len(correct)),
            "accuracy_ci": [0.1, 0.6],
            "entropy_bits": 0.7 if mode == "he" else 0.4,
            "kl_to_other": 0.0123,
            "length": 40.0,
            "pass_at_k": {"1": 0.25, "4": 0.5},
            "unique_correct": 1.5,
            "graded": True,
        },
    )
    EvalResult.objects.bulk_create(
        [
            EvalResult(
                evaluation=ev,
                question_id=f"test/q{q}",
                index=i,
                response=response,
                score=float(i < c),
                length=40,
                entropy_bits=0.5,
            )
            for q, c in enumerate(correct)
            for i in range(k)
        ]
    )
    return ev


def test_the_page_shows_tables_best_of_k_and_the_questions_one_mode_solved(
    client_for: Any, vera: Any, run: Run
) -> None:
    evaluated(run, "normal", [4, 0, 1, 0])
    he = evaluated(run, "he", [4, 2, 0, 0])
    response = client_for(vera).get(url(run))
    html = response.content.decode()
    assert response.status_code == 200
    assert "MATH-500" in html and "[10.0, 60.0]" in html and "0.0123" in html
    data = response.context["page_data"]
    (chart,) = data["passk"]
    # normal: per-question (n, c) = (4,4),(4,0),(4,1),(4,0) → pass@1 = 5/16, pass@4 = 2/4
    assert chart["curves"]["normal"]["pass"][0] == pytest.approx(100 * 5 / 16)
    assert chart["curves"]["normal"]["pass"][-1] == pytest.approx(50.0)
    # q1 only HE solved, q2 only normal solved
    found = [(q.question_id, q.solved_by) for q in response.context["one_mode"]]
    assert found == [("test/q1", "he"), ("test/q2", "normal")]
    assert response.context["one_mode_counts"] == {"normal": 1, "he": 1}
    assert reverse("webapp-evaluation-detail", args=[run.pk, he.pk]) + "?q=test/q1" in html


def test_the_page_charts_the_training_kl_and_entropy_in_bits(client_for: Any, vera: Any, run: Run) -> None:
    import math

    from webapp.models import MetricPoint

    for step in (1, 2):
        MetricPoint.objects.create(run=run, key="split/he_normal_kl", step=step, value=0.01 * step)
        MetricPoint.objects.create(run=run, key="he/entropy", step=step, value=math.log(2))
    data = client_for(vera).get(url(run)).context["page_data"]
    assert data["training"]["kl"]["split/he_normal_kl"]["values"] == [0.01, 0.02]
    assert data["training"]["entropy"]["he/entropy"]["values"] == pytest.approx([1.0, 1.0])


def test_responses_are_escaped(client_for: Any, vera: Any, run: Run) -> None:
    ev = evaluated(run, "he", [1], response="<script>alert(1)</script>")
    response = client_for(vera).get(reverse("webapp-evaluation-detail", args=[run.pk, ev.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1/4 correct" in html


def test_the_detail_page_names_the_checkpoint_evaluated_by_reference_not_by_path(
    client_for: Any, vera: Any, run: Run
) -> None:
    ev = evaluated(run, "normal", [1])
    path = run.checkpoints.get(step=ev.step).path
    Evaluation.objects.filter(pk=ev.pk).update(settings={**ev.settings, "model": path, "folder": path + "-eval"})
    html = client_for(vera).get(reverse("webapp-evaluation-detail", args=[run.pk, ev.pk])).content.decode()
    assert f'model <span class="mono">run:{run.pk}@{ev.step}</span>' in html and path not in html


def test_the_detail_page_filters_by_question_and_shows_the_prompt(client_for: Any, vera: Any, run: Run) -> None:
    ev = evaluated(run, "normal", [4, 0, 0])
    Evaluation.objects.filter(pk=ev.pk).update(benchmark="math500")
    EvalResult.objects.filter(evaluation=ev, question_id="test/q0").update(question_id="test/prealgebra/1.json")
    client = client_for(vera)
    page = client.get(reverse("webapp-evaluation-detail", args=[run.pk, ev.pk]), {"q": "test/prealgebra/1.json"})
    html = page.content.decode()
    assert "What is $2 + 3$?" in html and "test/q1" not in html
    wrong = client.get(reverse("webapp-evaluation-detail", args=[run.pk, ev.pk]), {"show": "wrong"})
    assert [q["id"] for q in wrong.context["questions"]] == ["test/q1", "test/q2"]


def test_the_status_endpoint_changes_its_token_when_an_evaluation_finishes(
    client_for: Any, vera: Any, run: Run
) -> None:
    (ev,) = service.evaluations_create(
        run=run, request=service.EvalRequest(step=2, benchmarks=("arith",), modes=("he",)), enqueue=False
    )
    client = client_for(vera)
    status_url = reverse("webapp-run-evaluations-status", args=[run.pk])
    before = client.get(status_url).json()
    assert before["active"] == 1
    assert b"In progress" in client.get(url(run)).content
    service.evaluations_fail([ev.pk], "boom")
    after = client.get(status_url).json()
    assert after["active"] == 0 and after["token"] != before["token"]


def test_creative_details_show_per_prompt_diversity_and_judge_errors(client_for: Any, vera: Any, run: Run) -> None:
    ev = Evaluation.objects.create(
        run=run,
        step=2,
        benchmark="creative",
        mode="he",
        status="succeeded",
        settings={"k": 2},
        metrics={
            "graded": False,
            "creative_per_prompt": {"creative-01": {"div_ngram": 81.25, "div_bleu": 90.5, "embedding_diversity": None}},
            "judge_errors": [{"question_id": "creative-01", "index": 1, "error": "judge answer lacks imagery"}],
        },
    )
    EvalResult.objects.bulk_create(
        [
            EvalResult(
                evaluation=ev,
                question_id="creative-01",
                index=i,
                response="Once <i>upon</i> a time",
                score=0.0,
                length=6,
            )
            for i in range(2)
        ]
    )
    html = client_for(vera).get(reverse("webapp-evaluation-detail", args=[run.pk, ev.pk])).content.decode()
    assert "Div-N-Gram 81.3" in html and "Div-BLEU 90.5" in html
    assert "creative-01#1: judge answer lacks imagery" in html
    assert "correct" not in html.split("eval-question")[1].split("</h3>")[0]  # creative samples are not graded
    assert "door" in html  # the prompt text, from the built-in prompts
