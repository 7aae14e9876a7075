"""The JSON API: bearer-token auth, every endpoint, validation errors, and team isolation."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from webapp.models import ApiToken, Checkpoint, EvalResult, Evaluation, MetricPoint, Run, RunLog, Sample, Study, Tag

pytestmark = pytest.mark.django_db


class Api:
    """A test client that sends a bearer token (and enforces CSRF, like a real browser would)."""

    def __init__(self, raw: str | None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"Authorization": f"Bearer {raw}"} if raw else {}

    def get(self, url: str, **params: Any) -> Any:
        return self.client.get(url, params, headers=self.headers)

    def post(self, url: str, body: Any = None, *, raw: str | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body or {})
        return self.client.post(url, data, content_type="application/json", headers=self.headers)

    def delete(self, url: str) -> Any:
        return self.client.delete(url, headers=self.headers)


ApiFor = Callable[[Any], Api]


@pytest.fixture
def api_for() -> ApiFor:
    def make(user: Any) -> Api:
        return Api(ApiToken.issue(user=user, name="test")[1])

    return make


@pytest.fixture
def run(make_run: Callable[..., Run]) -> Run:
    run = make_run(name="ps η=0.03", status="running", eta=0.03, seed=1)
    run.summary = {"train/reward": 0.5}
    run.save()
    return run


def runs_url(project: Any) -> str:
    return reverse("api-project-runs", args=[project.pk])


# --- authentication --------------------------------------------------------------------------------------


def test_it_requires_credentials(project: Any) -> None:
    response = Api(None).get(reverse("api-projects"))
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "authentication required" in response.json()["error"]


def test_it_rejects_an_unknown_token(alice: Any) -> None:
    response = Api("psl_not-a-real-token").get(reverse("api-projects"))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}


def test_it_rejects_a_revoked_token(alice: Any) -> None:
    token, raw = ApiToken.issue(user=alice, name="old")
    api = Api(raw)
    assert api.get(reverse("api-projects")).status_code == 200
    token.delete()  # what "Revoke" on the tokens page does
    assert api.get(reverse("api-projects")).status_code == 401


def test_it_rejects_a_malformed_authorization_header(alice: Any) -> None:
    _, raw = ApiToken.issue(user=alice, name="t")
    response = Client().get(reverse("api-projects"), headers={"Authorization": f"Token {raw}"})
    assert response.status_code == 401
    assert "malformed Authorization header" in response.json()["error"]


def test_it_rejects_the_token_of_a_deactivated_user(alice: Any, api_for: ApiFor) -> None:
    api = api_for(alice)
    alice.is_active = False
    alice.save()
    assert api.get(reverse("api-projects")).status_code == 401


def test_a_logged_in_browser_can_read_but_not_write(client_for: Any, alice: Any, project: Any) -> None:
    client = client_for(alice)
    assert client.get(reverse("api-projects")).status_code == 200
    response = client.post(runs_url(project), "{}", content_type="application/json")
    assert response.status_code == 401
    assert "writes need an API token" in response.json()["error"]
    assert not Run.objects.exists()


def test_token_writes_need_no_csrf_token(
    api_for: ApiFor, bob: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        response = api_for(bob).post(runs_url(project), {"algorithm": "grpo", "steps": 3})
    assert response.status_code == 201  # the Api client enforces CSRF checks


def test_last_used_is_recorded_at_most_once_a_minute(alice: Any) -> None:
    token, raw = ApiToken.issue(user=alice, name="t")
    api = Api(raw)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        api.get(reverse("api-projects"))
    token.refresh_from_db()
    assert token.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        api.get(reverse("api-projects"))
    token.refresh_from_db()
    assert token.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        api.get(reverse("api-projects"))
    token.refresh_from_db()
    assert token.last_used_at == start + timedelta(seconds=61)


# --- projects and runs -------------------------------------------------------------------------------------


def test_projects_lists_the_users_projects_with_their_role(
    api_for: ApiFor, vera: Any, project: Any, other_project: Any
) -> None:
    body = api_for(vera).get(reverse("api-projects")).json()
    assert [(p["id"], p["name"], p["team"], p["role"]) for p in body["results"]] == [
        (project.pk, "Entropy", "Lab", "viewer")
    ]


def test_runs_lists_the_projects_runs_newest_first(
    api_for: ApiFor, vera: Any, project: Any, run: Run, make_run: Callable[..., Run]
) -> None:
    newer = make_run(name="grpo", algorithm="grpo")
    body = api_for(vera).get(runs_url(project)).json()
    assert [r["id"] for r in body["results"]] == [newer.pk, run.pk]
    first = body["results"][1]
    assert (first["name"], first["algorithm"], first["status"]) == ("ps η=0.03", "policy_split", "running")
    assert first["summary"] == {"train/reward": 0.5}
    assert (body["count"], body["page"], body["pages"], body["next"]) == (2, 1, 1, None)


def test_runs_filter_by_status_algorithm_and_tag(
    api_for: ApiFor, vera: Any, project: Any, run: Run, make_run: Callable[..., Run]
) -> None:
    grpo = make_run(name="grpo", algorithm="grpo", status="succeeded")
    grpo.tags.add(Tag.objects.create(project=project, name="paper"))
    api = api_for(vera)

    def names(**params: str) -> list[str]:
        return [r["name"] for r in api.get(runs_url(project), **params).json()["results"]]

    assert names(status="succeeded") == ["grpo"]
    assert names(algorithm="policy_split") == ["ps η=0.03"]
    assert names(tag="paper") == ["grpo"]
    assert names(status="running", algorithm="grpo") == []


def test_runs_are_paginated(api_for: ApiFor, vera: Any, project: Any, make_run: Callable[..., Run]) -> None:
    for i in range(5):
        make_run(name=f"r{i}")
    body = api_for(vera).get(runs_url(project), limit="2", page="2").json()
    assert [r["name"] for r in body["results"]] == ["r2", "r1"]
    assert (body["count"], body["pages"], body["limit"]) == (5, 3, 2)
    assert body["next"].endswith("limit=2&page=3") and body["previous"].endswith("limit=2&page=1")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"algorithm": "ppo"}, "algorithm"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"page": "x"}, "page"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(
    api_for: ApiFor, vera: Any, project: Any, params: dict[str, str], field: str
) -> None:
    response = api_for(vera).get(runs_url(project), **params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_members_create_a_run_from_a_partial_config(
    api_for: ApiFor, bob: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    body = {
        "algorithm": "grpo",
        "eta": 0.05,
        "steps": 20,
        "n": 8,
        "seed": 3,
        "name": "api run",
        "queue": "cpu",
        "tags": ["api", "sweep"],
        "wandb": False,
    }
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_for(bob).post(runs_url(project), body)
    assert response.status_code == 201
    data = response.json()
    run = Run.objects.get()
    assert response["Location"] == reverse("api-run", args=[run.pk])
    assert (data["id"], data["name"], data["status"], data["queue"]) == (run.pk, "api run", "queued", "cpu")
    assert sorted(data["tags"]) == ["api", "sweep"]
    assert run.config["eta"] == 0.05 and run.config["n"] == 8 and run.config["lr"] == 1e-5  # defaults fill in
    assert (run.algorithm, run.seed, run.total_steps, run.created_by) == ("grpo", 3, 20, bob)
    assert len(callbacks) == 1  # enqueued once the transaction commits


def test_a_run_is_submitted_with_a_priority(
    api_for: ApiFor, bob: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        response = api_for(bob).post(runs_url(project), {"priority": "high"})
    assert response.status_code == 201 and response.json()["priority"] == "high"
    assert Run.objects.get().priority_name == "high"


def test_a_run_can_join_a_study_of_the_project(
    api_for: ApiFor, bob: Any, project: Any, django_capture_on_commit_callbacks: Any
) -> None:
    study = Study.objects.create(project=project, name="s")
    with django_capture_on_commit_callbacks(execute=False):
        response = api_for(bob).post(runs_url(project), {"study": study.pk})
    assert response.status_code == 201 and Run.objects.get().study == study


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"eta": -1}, "eta"),
        ({"algorithm": "ppo"}, "algorithm"),
        ({"mini_batches": 7}, "mini_batches"),
        ({"steps": "many"}, "steps"),
        ({"not_a_field": 1}, "not_a_field"),
        ({"queue": "tpu"}, "queue"),
        ({"tags": "api"}, "tags"),
        ({"wandb": "yes"}, "wandb"),
        ({"name": 5}, "name"),
        ({"study": 99999}, "study"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_invalid_input_is_400_naming_the_field_and_creates_nothing(
    api_for: ApiFor, bob: Any, project: Any, body: dict[str, Any], field: str
) -> None:
    response = api_for(bob).post(runs_url(project), body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_a_body_that_is_not_a_json_object_is_400(api_for: ApiFor, bob: Any, project: Any, raw: str) -> None:
    response = api_for(bob).post(runs_url(project), raw=raw)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert not Run.objects.exists()


def test_viewers_cannot_create_runs(api_for: ApiFor, vera: Any, project: Any) -> None:
    response = api_for(vera).post(runs_url(project), {"algorithm": "grpo"})
    assert response.status_code == 403
    assert "viewer" in response.json()["error"]
    assert not Run.objects.exists()


def test_run_detail_has_config_status_timestamps_progress_and_summary(api_for: ApiFor, vera: Any, run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(step=5, total_steps=10)
    data = api_for(vera).get(reverse("api-run", args=[run.pk])).json()
    assert data["config"]["eta"] == 0.03 and data["status"] == "running"
    assert data["progress"] == 0.5 and data["step"] == 5 and data["total_steps"] == 10
    assert data["created_at"] and data["summary"] == {"train/reward": 0.5}
    assert data["url"] == reverse("webapp-run-detail", args=[run.pk])


def test_run_detail_names_checkpoints_by_reference_never_by_their_worker_path(
    api_for: ApiFor, vera: Any, run: Run
) -> None:
    folder = f"/srv/psl-worker/var/runs/run-{run.pk}/checkpoints"
    Checkpoint.objects.create(run=run, step=4, path=f"{folder}/step_000004")
    Checkpoint.objects.create(run=run, step=8, path=f"{folder}/step_000008")
    response = api_for(vera).get(reverse("api-run", args=[run.pk]))
    checkpoints = response.json()["checkpoints"]
    assert [(c["step"], c["reference"]) for c in checkpoints] == [(4, f"run:{run.pk}@4"), (8, f"run:{run.pk}@8")]
    assert all(c["created_at"] for c in checkpoints)
    assert "/srv/psl-worker" not in response.content.decode()


def test_members_cancel_a_run(api_for: ApiFor, bob: Any, make_run: Callable[..., Run]) -> None:
    queued = make_run(status="queued")
    response = api_for(bob).post(reverse("api-run-cancel", args=[queued.pk]))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_cancelling_a_finished_run_is_a_conflict(api_for: ApiFor, bob: Any, make_run: Callable[..., Run]) -> None:
    done = make_run(status="succeeded")
    response = api_for(bob).post(reverse("api-run-cancel", args=[done.pk]))
    assert response.status_code == 409
    assert "only queued or running runs" in response.json()["error"]


def test_viewers_cannot_cancel(api_for: ApiFor, vera: Any, run: Run) -> None:
    assert api_for(vera).post(reverse("api-run-cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert not run.cancel_requested


def test_a_wrong_method_is_405_with_allow(api_for: ApiFor, bob: Any, run: Run) -> None:
    api = api_for(bob)
    response = api.get(reverse("api-run-cancel", args=[run.pk]))
    assert response.status_code == 405 and response["Allow"] == "POST"
    response = api.delete(reverse("api-run", args=[run.pk]))
    assert response.status_code == 405 and response.json()["error"].startswith("method DELETE not allowed")


def test_an_unknown_api_path_is_a_json_404(api_for: ApiFor, vera: Any) -> None:
    response = api_for(vera).get("/api/nothing/here/")
    assert response.status_code == 404 and "no API endpoint" in response.json()["error"]


def test_a_missing_trailing_slash_is_pointed_out(api_for: ApiFor, vera: Any) -> None:
    response = api_for(vera).get("/api/projects")
    assert response.status_code == 404
    assert response.json()["error"] == "no API endpoint at /api/projects; did you mean /api/projects/ ?"


# --- run data ----------------------------------------------------------------------------------------------


def test_metrics_returns_the_series_of_each_key(api_for: ApiFor, vera: Any, run: Run) -> None:
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(run=run, key=k, step=s, value=s * m)
            for k, m in (("train/reward", 0.1), ("he/entropy", 1.0))
            for s in range(1, 6)
        ]
    )
    url = reverse("api-run-metrics", args=[run.pk])
    body = api_for(vera).get(url + "?key=train/reward&key=he/entropy&min_step=2&max_step=4").json()
    assert body["series"]["he/entropy"] == {
        "steps": [2, 3, 4],
        "values": [2.0, 3.0, 4.0],
        "bucketed": False,
        "total": 3,
    }
    assert body["series"]["train/reward"]["values"] == pytest.approx([0.2, 0.3, 0.4])


def test_metrics_are_down_sampled_to_the_requested_points(api_for: ApiFor, vera: Any, run: Run) -> None:
    MetricPoint.objects.bulk_create([MetricPoint(run=run, key="k", step=s, value=s % 10) for s in range(500)])
    url = reverse("api-run-metrics", args=[run.pk])
    series = api_for(vera).get(url, key="k", points="20").json()["series"]
    assert series["k"]["bucketed"] and series["k"]["total"] == 500 and len(series["k"]["steps"]) <= 20


def test_metrics_without_a_key_lists_the_logged_keys(api_for: ApiFor, vera: Any, run: Run) -> None:
    response = api_for(vera).get(reverse("api-run-metrics", args=[run.pk]))
    assert response.status_code == 400
    assert response.json() == {"error": "pass one or more ?key=; this run logged: train/reward", "field": "key"}


def test_metrics_reject_bad_ranges(api_for: ApiFor, vera: Any, run: Run) -> None:
    response = api_for(vera).get(reverse("api-run-metrics", args=[run.pk]), key="k", points="1")
    assert response.status_code == 400 and response.json()["field"] == "points"


def make_samples(run: Run) -> None:
    Sample.objects.bulk_create(
        [
            Sample(
                run=run,
                step=step,
                question_id=q,
                mode=mode,
                context=mode,
                index=i,
                prompt="<b>2+2?</b>",
                answer="4",
                response=f"<i>{step}-{q}-{mode}-{i}</i>",
                reward=float(i == 0),
                length=3,
                tokens=["a"],
                surprisal=[0.1],
            )
            for step in (1, 2)
            for q in ("q1", "q2")
            for mode in ("normal", "he")
            for i in range(2)
        ]
    )


def test_samples_filter_and_page_and_keep_text_as_plain_strings(api_for: ApiFor, vera: Any, run: Run) -> None:
    make_samples(run)
    url = reverse("api-run-samples", args=[run.pk])
    api = api_for(vera)
    body = api.get(url, step="2", question_id="q1", mode="he").json()
    assert body["count"] == 2
    first = body["results"][0]
    assert first["response"] == "<i>2-q1-he-0</i>" and first["prompt"] == "<b>2+2?</b>"  # not HTML-escaped
    assert first["is_correct"] is True and "tokens" not in first
    page = api.get(url, limit="3", page="2").json()
    assert page["count"] == 16 and len(page["results"]) == 3 and (page["page"], page["pages"]) == (2, 6)
    assert page["next"].endswith("page=3") and "page=1" in page["previous"]
    assert api.get(url, offset="6").json()["field"] == "offset"  # one pagination style
    assert api.get(url, tokens="maybe").json()["field"] == "tokens"
    assert api.get(url, tokens="1", limit="1").json()["results"][0]["tokens"] == ["a"]
    assert api.get(url, mode="both").json()["field"] == "mode"


def test_evaluations_list_the_runs_evaluations(api_for: ApiFor, vera: Any, run: Run) -> None:
    ev = Evaluation.objects.create(
        run=run,
        step=10,
        benchmark="MATH-500",
        mode="he",
        status="succeeded",
        metrics={"accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "entropy_bits": 0.9},
    )
    EvalResult.objects.create(evaluation=ev, question_id="q1", index=0, response="x", score=1.0, length=1)
    (data,) = api_for(vera).get(reverse("api-run-evaluations", args=[run.pk])).json()["results"]
    assert (data["benchmark"], data["mode"], data["step"], data["n_results"]) == ("MATH-500", "he", 10, 1)
    assert data["metrics"]["accuracy_ci"] == [0.4, 0.6]


def test_evaluations_name_the_model_evaluated_by_reference_never_by_the_runners_paths(
    api_for: ApiFor, vera: Any, run: Run
) -> None:
    folder = f"/srv/psl-worker/var/runs/run-{run.pk}"
    worker_record = {"model": f"{folder}/checkpoints/step_000010", "folder": f"{folder}/evaluations/step_000010-1"}
    for step in (0, 10):
        Evaluation.objects.create(
            run=run, step=step, benchmark="math500", mode="normal", settings={"k": 4, "host": "w1", **worker_record}
        )
    response = api_for(vera).get(reverse("api-run-evaluations", args=[run.pk]))
    base, trained = response.json()["results"]
    assert (base["model"], trained["model"]) == (run.model_name, f"run:{run.pk}@10")
    assert trained["settings"] == {"k": 4, "host": "w1"}
    assert folder not in response.content.decode()


# --- isolation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "name", "kind"),
    [
        ("get", "api-project-runs", "project"),
        ("post", "api-project-runs", "project"),
        ("get", "api-run", "run"),
        ("post", "api-run-cancel", "run"),
        ("get", "api-run-metrics", "run"),
        ("get", "api-run-samples", "run"),
        ("get", "api-run-evaluations", "run"),
        ("get", "api-run-logs", "run"),
    ],
)
def test_other_teams_get_404_for_labs_objects(
    api_for: ApiFor, eve: Any, project: Any, run: Run, method: str, name: str, kind: str
) -> None:
    target = project if kind == "project" else run
    api = api_for(eve)
    url = reverse(name, args=[target.pk])
    response = api.get(url, key="train/reward") if method == "get" else api.post(url, {"algorithm": "grpo"})
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert Run.objects.count() == 1
    run.refresh_from_db()
    assert not run.cancel_requested


def _log(run: Run, *lines: tuple[str, str], attempt: int = 0, source: str = "trainer") -> None:
    first = RunLog.objects.filter(run=run, attempt=attempt, source=source).count()
    RunLog.objects.bulk_create(
        RunLog(run=run, attempt=attempt, source=source, seq=first + i, level=level, message=message)
        for i, (level, message) in enumerate(lines)
    )


def test_a_token_user_reads_the_tail_of_a_runs_log_filtered_by_level(api_for: ApiFor, vera: Any, run: Run) -> None:
    _log(run, ("info", "step 1"), ("warning", "slow step"), ("info", "step 2"), ("error", "CUDA out of memory"))
    url = reverse("api-run-logs", args=[run.pk])
    api = api_for(vera)  # a viewer reads logs

    tail = api.get(url, tail=2).json()
    assert [x["message"] for x in tail["results"]] == ["step 2", "CUDA out of memory"]
    assert set(tail["results"][0]) == {"id", "attempt", "source", "level", "time", "message"}
    warnings = api.get(url, level="warning").json()
    assert [x["message"] for x in warnings["results"]] == ["slow step", "CUDA out of memory"]
    assert warnings["count"] == 2 and warnings["next"] is None
    assert api.get(url, level="loud").json()["field"] == "level"


def test_a_runs_log_is_read_in_ranges_after_a_line_and_by_attempt(api_for: ApiFor, vera: Any, run: Run) -> None:
    _log(run, ("info", "first try"), ("error", "Traceback (most recent call last): ..."))
    _log(run, ("info", "resumed"), ("info", "step 3"), ("info", "step 4"), attempt=1, source="output")
    url = reverse("api-run-logs", args=[run.pk])
    api = api_for(vera)

    everything = api.get(url).json()["results"]
    assert [x["message"] for x in everything][:3] == ["first try", "Traceback (most recent call last): ...", "resumed"]
    newer = api.get(url, after=everything[2]["id"]).json()["results"]
    assert [x["message"] for x in newer] == ["step 3", "step 4"]
    page = api.get(url, limit=2, page=2).json()
    assert [x["message"] for x in page["results"]] == ["resumed", "step 3"] and page["pages"] == 3
    second = api.get(url, attempt=1).json()["results"]
    assert {x["attempt"] for x in second} == {1} and {x["source"] for x in second} == {"output"}
    assert api.get(url, tail=0).status_code == 400


def test_reading_a_runs_log_needs_a_token_or_a_session(run: Run) -> None:
    assert Api(None).get(reverse("api-run-logs", args=[run.pk])).status_code == 401


def test_other_teams_do_not_see_labs_projects(api_for: ApiFor, eve: Any, project: Any, other_project: Any) -> None:
    body = api_for(eve).get(reverse("api-projects")).json()
    assert [p["name"] for p in body["results"]] == ["Secret"]


def test_the_runs_list_runs_a_constant_number_of_queries(
    api_for: ApiFor, vera: Any, project: Any, make_run: Callable[..., Run], django_assert_max_num_queries: Any
) -> None:
    for i in range(8):
        make_run(name=f"r{i}").tags.add(Tag.objects.get_or_create(project=project, name="t")[0])
    api = api_for(vera)
    with django_assert_max_num_queries(8):
        assert len(api.get(runs_url(project)).json()["results"]) == 8
