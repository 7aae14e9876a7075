"""The run page, its status poll, its series endpoint, logs download, cancel and resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.models import Checkpoint, MetricPoint, Run, RunLog, RunStatus, Study

pytestmark = pytest.mark.django_db


def url(name: str, run: Run, query: str = "") -> str:
    return reverse(name, args=[run.pk]) + (f"?{query}" if query else "")


def add_points(run: Run, key: str, values: list[float], *, start: int = 1) -> None:
    MetricPoint.objects.bulk_create(
        [MetricPoint(run=run, key=key, step=start + i, value=v) for i, v in enumerate(values)]
    )


@pytest.mark.parametrize("status", [s.value for s in RunStatus])
def test_it_renders_the_run_page_in_every_status(
    status: str, client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(name="the run", status=status)
    response = client_for(alice).get(url("webapp-run-detail", run))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'badge status-{status}"' in body
    assert "vendor/plotly/plotly.min.js" in body
    assert (">Cancel</button>" in body) == (status in ("queued", "running"))
    assert ("Resume from" in body) == (status in ("failed", "cancelled", "lost"))


def test_it_shows_progress_eta_and_the_error(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running", steps=100)
    Run.objects.filter(pk=run.pk).update(
        step=25, started_at=timezone.now() - timedelta(minutes=10), host="gpu-7", error=""
    )
    body = client_for(alice).get(url("webapp-run-detail", run)).content.decode()
    assert "step 25 / 100" in body and "ETA 30m" in body and "gpu-7" in body
    Run.objects.filter(pk=run.pk).update(status="failed", error="CUDA <oom>")
    body = client_for(alice).get(url("webapp-run-detail", run)).content.decode()
    assert "The run failed" in body and "CUDA &lt;oom&gt;" in body


WORKER_FOLDER = "/srv/psl-worker/var/runs"


def test_it_lists_logs_newest_at_the_bottom_and_checkpoints_by_reference_never_by_path(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running")
    RunLog.objects.bulk_create([RunLog(run=run, seq=i, message=f"line {i}") for i in range(3)])
    for step in (5, 10):
        Checkpoint.objects.create(run=run, step=step, path=f"{WORKER_FOLDER}/run-{run.pk}/checkpoints/step_{step:06d}")
    client = client_for(alice)
    body = client.get(url("webapp-run-detail", run)).content.decode()
    assert body.index("line 0") < body.index("line 1") < body.index("line 2")
    assert f"run:{run.pk}@5" in body and f"run:{run.pk}@10" in body
    assert WORKER_FOLDER not in body and "checkpoints/step_" not in body
    polled = client.get(url("webapp-run-status", run)).json()["checkpoints_html"]  # the panel's live refresh
    assert f"run:{run.pk}@10" in polled and WORKER_FOLDER not in polled


def test_it_highlights_config_differences_from_the_parent(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    parent = make_run(name="parent", eta=0.03)
    child = make_run(name="child", eta=0.1)
    Run.objects.filter(pk=child.pk).update(parent=parent)
    response = client_for(alice).get(url("webapp-run-detail", child))
    changed = [r["name"] for r in response.context["config_rows"] if r["changed"]]
    assert changed == ["eta"]
    assert "cloned from" in response.content.decode()


def test_it_compares_a_study_run_with_the_baseline(
    client_for: Callable[..., Any], alice: Any, project: Any, make_run: Callable[..., Any]
) -> None:
    base, other = make_run(kappa=2.0), make_run(kappa=1.0)
    study = Study.objects.create(project=project, name="s", baseline=base)
    Run.objects.filter(pk__in=[base.pk, other.pk]).update(study=study)
    response = client_for(alice).get(url("webapp-run-detail", other))
    assert response.context["reference"] == base
    assert [r["name"] for r in response.context["config_rows"] if r["changed"]] == ["kappa"]


def test_it_offers_only_the_charts_of_the_algorithm(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    grpo = make_run(algorithm="grpo")
    charts = client_for(alice).get(url("webapp-run-detail", grpo)).context["page_data"]["charts"]
    keys = [line["key"] for chart in charts for line in chart["lines"]]
    assert "split/he_normal_kl" not in keys and "he/accuracy" not in keys and "normal/accuracy" in keys


def test_it_escapes_run_names_on_the_run_page(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(name='</script><img src=x onerror="alert(1)">')
    RunLog.objects.create(run=run, seq=0, message="<b>model output</b>")
    body = client_for(alice).get(url("webapp-run-detail", run)).content.decode()
    assert "<img src=x" not in body and "<b>model output</b>" not in body


# --- status poll -----------------------------------------------------------------------------------------


def test_it_returns_the_status_contract(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running", steps=10)
    Run.objects.filter(pk=run.pk).update(step=3)
    RunLog.objects.create(run=run, seq=0, message="hello <world>")
    add_points(run, "normal/accuracy", [0.1, 0.2, 0.3])
    add_points(run, "he/accuracy", [0.5, 0.6, 0.7])
    data = client_for(alice).get(url("webapp-run-status", run, "since=1")).json()
    assert {
        "token",
        "changed",
        "status",
        "finished",
        "step",
        "total_steps",
        "attempt",
        "header_html",
        "logs_html",
        "points",
        "reset",
    } <= set(data)
    assert (data["status"], data["finished"], data["step"], data["total_steps"]) == ("running", False, 3, 10)
    assert data["points"] == {"he/accuracy": [[2, 0.6], [3, 0.7]], "normal/accuracy": [[2, 0.2], [3, 0.3]]}
    assert "hello &lt;world&gt;" in data["logs_html"] and "step 3 / 10" in data["header_html"]
    assert data["reset"] is False


def test_it_skips_the_partials_when_the_token_is_unchanged(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running")
    client = client_for(alice)
    token = client.get(url("webapp-run-status", run)).json()["token"]
    data = client.get(url("webapp-run-status", run, f"token={token}")).json()
    assert data["changed"] is False and "header_html" not in data
    RunLog.objects.create(run=run, seq=0, message="new line")
    data = client.get(url("webapp-run-status", run, f"token={token}")).json()
    assert data["changed"] is True and "new line" in data["logs_html"]


def test_it_tells_the_page_when_the_run_is_finished(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="succeeded")
    assert client_for(alice).get(url("webapp-run-status", run)).json()["finished"] is True


def test_it_asks_for_a_refetch_when_the_page_is_far_behind(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running")
    add_points(run, "normal/accuracy", [0.5] * 5001)
    data = client_for(alice).get(url("webapp-run-status", run, "since=0")).json()
    assert data["reset"] is True and data["points"] == {}


def test_it_rejects_a_bad_since(client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]) -> None:
    run = make_run()
    assert client_for(alice).get(url("webapp-run-status", run, "since=abc")).status_code == 400


# --- series ----------------------------------------------------------------------------------------------


def test_it_returns_raw_series_for_small_ranges(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run()
    add_points(run, "actor/pg_loss", [1.0, 2.0, 3.0])
    data = client_for(alice).get(url("webapp-run-series", run, "key=actor/pg_loss&key=missing")).json()
    assert data["series"]["actor/pg_loss"] == {
        "steps": [1, 2, 3],
        "values": [1.0, 2.0, 3.0],
        "bucketed": False,
        "total": 3,
    }
    assert data["series"]["missing"]["steps"] == []


def test_it_buckets_and_rebuckets_on_zoom(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run()
    values = [0.0] * 1000
    values[500] = 99.0
    add_points(run, "actor/grad_norm", values)
    client = client_for(alice)
    full = client.get(url("webapp-run-series", run, "key=actor/grad_norm&points=100")).json()["series"]
    line = full["actor/grad_norm"]
    assert line["bucketed"] and len(line["steps"]) <= 100 and 99.0 in line["values"]
    query = "key=actor/grad_norm&points=100&min_step=480&max_step=530"
    zoomed = client.get(url("webapp-run-series", run, query))
    line = zoomed.json()["series"]["actor/grad_norm"]
    assert not line["bucketed"] and line["steps"] == list(range(480, 531))


def test_it_rejects_bad_series_parameters(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run()
    assert client_for(alice).get(url("webapp-run-series", run, "key=a&min_step=x")).status_code == 400


# --- actions ---------------------------------------------------------------------------------------------


def test_it_cancels_a_queued_run(client_for: Callable[..., Any], bob: Any, make_run: Callable[..., Any]) -> None:
    run = make_run()
    response = client_for(bob).post(url("webapp-run-cancel", run))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_it_explains_why_a_finished_run_cannot_be_cancelled(
    client_for: Callable[..., Any], bob: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="succeeded")
    response = client_for(bob).post(url("webapp-run-cancel", run), follow=True)
    assert "only queued or running runs can be cancelled" in response.content.decode()


def test_it_resumes_a_failed_run(
    client_for: Callable[..., Any], bob: Any, make_run: Callable[..., Any], django_capture_on_commit_callbacks: Any
) -> None:
    run = make_run(status="failed")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client_for(bob).post(url("webapp-run-resume", run))
    run.refresh_from_db()
    assert (run.status, run.attempt, len(callbacks)) == ("queued", 1, 1)


def test_it_downloads_the_full_log(client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]) -> None:
    run = make_run()
    RunLog.objects.bulk_create(
        [RunLog(run=run, attempt=a, seq=i, message=f"a{a} l{i}") for a in (1, 0) for i in range(2)]
    )
    response = client_for(alice).get(url("webapp-run-logs", run))
    text = b"".join(response.streaming_content).decode()
    assert response["Content-Type"].startswith("text/plain")
    assert "attachment" in response["Content-Disposition"]
    assert [line.split()[-1] for line in text.splitlines()] == ["l0", "l1", "l0", "l1"]
    assert text.index("a0 l1") < text.index("a1 l0")


def test_it_embeds_the_page_data_as_json(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running")
    body = client_for(alice).get(url("webapp-run-detail", run)).content.decode()
    start = body.index('<script id="run-page-data" type="application/json">') + len(
        '<script id="run-page-data" type="application/json">'
    )
    data = json.loads(body[start : body.index("</script>", start)])
    assert data["statusUrl"] == url("webapp-run-status", run) and data["finished"] is False


def test_the_log_panel_and_its_download_filter_by_level(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="failed")
    lines = [("info", "step 1/2"), ("warning", "UserWarning: slow"), ("error", "Traceback (most recent call last):")]
    RunLog.objects.bulk_create(
        [RunLog(run=run, source="output", seq=i, level=lv, message=m) for i, (lv, m) in enumerate(lines)]
    )
    client = client_for(alice)

    panel = client.get(url("webapp-run-status", run, "log_level=warning")).json()["logs_html"]
    assert "UserWarning: slow" in panel and "Traceback" in panel and "step 1/2" not in panel
    text = b"".join(client.get(url("webapp-run-logs", run, "level=error")).streaming_content).decode()
    assert text.count("\n") == 1 and "ERROR" in text
    assert client.get(url("webapp-run-status", run, "log_level=loud")).status_code == 400
    assert client.get(url("webapp-run-logs", run, "level=loud")).status_code == 400


def test_the_system_panel_polls_its_own_seconds_axis(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running")
    add_points(run, "train/reward", [0.1, 0.2])  # steps 1, 2
    add_points(run, "system/cpu_percent", [90.0, 95.0, 99.0], start=40)  # seconds 40, 41, 42

    data = client_for(alice).get(url("webapp-run-status", run, "since=1&system_since=40")).json()

    assert data["points"] == {"train/reward": [[2, 0.2]]}
    assert data["system_points"] == {"system/cpu_percent": [[41, 95.0], [42, 99.0]]}
    page_data = client_for(alice).get(url("webapp-run-detail", run)).context["page_data"]
    assert [c["id"] for c in page_data["systemCharts"]] == ["sys-cpu", "sys-rss", "sys-host-mem"]  # a CPU run


def test_a_gpu_run_gets_utilisation_and_memory_charts_per_gpu(make_run: Callable[..., Any]) -> None:
    from webapp.views.runs import system_charts_for

    run = make_run()
    run.gpus = 2

    gpu_charts = [c for c in system_charts_for(run) if c["id"].startswith("sys-gpu")]

    assert [[line["key"] for line in c["lines"]] for c in gpu_charts] == [
        ["system/gpu0/utilization_percent", "system/gpu1/utilization_percent"],
        ["system/gpu0/memory_used_mb", "system/gpu1/memory_used_mb"],
    ]


def test_the_download_says_how_many_output_lines_the_window_dropped(
    client_for: Callable[..., Any], alice: Any, make_run: Callable[..., Any]
) -> None:
    run = make_run(status="running")
    RunLog.objects.bulk_create([RunLog(run=run, source="output", seq=s, message=f"line {s}") for s in (7, 8)])

    text = b"".join(client_for(alice).get(url("webapp-run-logs", run)).streaming_content).decode()

    assert text.splitlines()[0] == "[attempt 0] … its first 7 output lines were dropped (PSL_LOG_MAX_LINES)"
    assert text.splitlines()[1].endswith("line 7")
