"""End to end: train tiny-random for 2 steps, evaluate its checkpoint in both modes through the
service (the real evaluator child process), then read the rows, the evaluations page and the study table."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from tests.trainer.conftest import tiny_config
from trainer.events import Callbacks
from trainer.loop import train
from webapp.evaluations import runner
from webapp.evaluations import services as service
from webapp.models import Checkpoint, EvalResult, EvalStatus, MetricPoint, Run, Study

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"


def test_a_trained_checkpoint_is_evaluated_in_both_modes_and_shows_up_in_the_study_table(
    tmp_path: Path, settings: Any, make_run: Callable[..., Run], project: Any, alice: Any, client_for: Any
) -> None:
    settings.PSL_DATA_DIR = FIXTURES
    settings.PSL_RUNS_DIR = tmp_path / "runs"
    cfg = tiny_config(tmp_path, steps=2, task="arith")
    metrics: list[tuple[int, dict[str, float]]] = []
    cb = Callbacks()
    cb.on_metrics = lambda step, values: metrics.append((step, dict(values)))
    result = train(cfg, cb)
    assert result.steps_done == 2 and result.checkpoint

    run = make_run(
        name="ps tiny e2e",
        status="succeeded",
        **{k: v for k, v in cfg.to_dict().items() if k not in ("output_dir", "schema_version")},
    )
    Checkpoint.objects.create(run=run, step=2, path=result.checkpoint)
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(run=run, key=k, step=s, value=v)
            for s, values in metrics
            for k, v in values.items()
            if math.isfinite(v)
        ]
    )
    study = Study.objects.create(
        project=project, name="e2e study", factors={"algorithm": ["policy_split"]}, created_by=alice
    )
    run.study = study
    run.save()

    request = service.EvalRequest(step=2, benchmarks=("math500",), k=2, limit=2, max_new_tokens=6)
    evals = service.evaluations_create(run=run, request=request, user=alice, enqueue=False)
    assert runner.evaluations_execute([e.pk for e in evals], host="test") == "succeeded"

    by_mode = {ev.mode: ev for ev in run.evaluations.all()}
    assert set(by_mode) == {"normal", "he"}
    for ev in by_mode.values():
        assert ev.status == EvalStatus.SUCCEEDED, ev.error
        assert ev.settings["model"] == result.checkpoint
        assert EvalResult.objects.filter(evaluation=ev).count() == 4  # 2 questions × k=2
        m = ev.metrics
        assert 0.0 <= m["accuracy"] <= 1.0 and m["entropy_bits"] > 0
        assert math.isfinite(m["kl_to_other"]) and set(m["pass_at_k"]) == {"1", "2"}
    assert by_mode["he"].metrics["kl_direction"] == "KL(HE‖normal) on HE samples"

    client = client_for(alice)
    page = client.get(reverse("webapp-run-evaluations", args=[run.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "MATH-500" in html
    assert f"{100 * by_mode['he'].metrics['accuracy']:.2f}" in html
    assert page.context["page_data"]["training"]["kl"]["split/he_normal_kl"]["steps"] == [1.0, 2.0]

    detail = client.get(reverse("webapp-evaluation-detail", args=[run.pk, by_mode["normal"].pk]))
    assert detail.status_code == 200 and len(detail.context["questions"]) == 2
    assert all(q["prompt"].startswith("Solve the following math problem") for q in detail.context["questions"])

    study_page = client.get(reverse("webapp-study-detail", args=[study.pk]))
    study_html = study_page.content.decode()
    paper = study_page.context["sv"].paper
    assert paper is not None and paper.benchmarks == ["math500"]
    assert [row.kind for row in paper.rows] == ["method", "he"]
    assert "Acc / Ent" in study_html and "+ HE prompt" in study_html
    ent = paper.rows[1].cells[0].ent
    assert ent == pytest.approx(by_mode["he"].metrics["entropy_bits"])
