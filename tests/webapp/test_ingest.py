"""Ingestion is batched and idempotent: replays never duplicate, resumes rewind cleanly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webapp import ingest
from webapp.execution import EventPump
from webapp.models import Checkpoint, MetricPoint, Run, RunLog, Sample

pytestmark = pytest.mark.django_db


def _sample(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "question_id": "q1",
        "mode": "normal" if i < 2 else "he",
        "context": "normal" if i < 2 else "he",
        "index": i % 2,
        "prompt": "p",
        "answer": "4",
        "response": f"r{i}",
        "reward": 1.0,
        "advantage": None,
        "num_tokens": 3,
        "mean_entropy": 0.5,
        "surprisal": [0.1, 0.2, 0.3],
        "tokens": ["a", "b", "c"],
        **extra,
    }


def test_it_writes_metric_points_once_even_when_a_batch_is_replayed(make_run: Any) -> None:
    run = make_run()
    rows = [(run.pk, "train/reward", step, step / 10) for step in range(1, 101)]
    ingest.metrics_record(rows)
    ingest.metrics_record(rows[50:])  # a retried half batch
    assert MetricPoint.objects.filter(run=run).count() == 100
    assert MetricPoint.objects.get(run=run, step=7).value == pytest.approx(0.7)


def test_it_drops_non_finite_values(make_run: Any) -> None:
    run = make_run()
    rows = [(run.pk, "a", 1, float("nan")), (run.pk, "a", 2, float("inf")), (run.pk, "a", 3, 1.0)]
    sent = ingest.metrics_record(rows)
    assert sent == 1
    assert list(MetricPoint.objects.filter(run=run).values_list("step", flat=True)) == [3]


def test_it_writes_samples_once_with_their_arrays(make_run: Any) -> None:
    run = make_run()
    ingest.samples_record(run.pk, 3, [_sample(i) for i in range(4)])
    ingest.samples_record(run.pk, 3, [_sample(i) for i in range(4)])
    assert Sample.objects.filter(run=run).count() == 4
    sample = Sample.objects.get(run=run, mode="he", index=1)
    assert sample.surprisal == [0.1, 0.2, 0.3] and sample.tokens == ["a", "b", "c"] and sample.response == "r3"


def test_it_keeps_untrusted_text_byte_for_byte(make_run: Any) -> None:
    run = make_run()
    nasty = '<script>alert(1)</script>\t\\N\n"quotes" \x01 ünïcödé'
    ingest.samples_record(run.pk, 1, [_sample(0, response=nasty, tokens=[nasty])])
    sample = Sample.objects.get(run=run)
    assert sample.response == nasty
    assert sample.tokens == [nasty]


def test_it_never_moves_progress_backwards(make_run: Any) -> None:
    run = make_run()
    ingest.progress_record(run.pk, 5, 10)
    ingest.progress_record(run.pk, 3, 10)  # a late, replayed event
    assert Run.objects.get(pk=run.pk).step == 5


def test_a_resume_forgets_what_the_lost_attempt_logged_after_its_checkpoint(make_run: Any) -> None:
    run = make_run()
    ingest.metrics_record([(run.pk, "k", s, 1.0) for s in range(1, 8)])
    ingest.samples_record(run.pk, 7, [_sample(0)])
    ingest.checkpoint_record(run.pk, 6, "/ckpt/6")
    ingest.run_rewind(run.pk, to_step=4)
    assert list(MetricPoint.objects.filter(run=run).order_by("step").values_list("step", flat=True)) == [1, 2, 3, 4]
    assert not Sample.objects.filter(run=run).exists()
    run.refresh_from_db()
    assert run.step == 4


def test_the_event_pump_ingests_a_file_exactly_once_across_calls(make_run: Any, tmp_path: Path) -> None:
    run = make_run(status="running")
    events = tmp_path / "events.jsonl"
    lines = [
        {"kind": "metrics", "step": 1, "values": {"train/reward": 0.5, "normal/entropy": 2.0}},
        {"kind": "samples", "step": 1, "samples": [_sample(0)]},
        {"kind": "progress", "step": 1, "total": 2},
        {"kind": "checkpoint", "step": 1, "path": "/ckpt/1"},
        {"kind": "log", "level": "info", "message": "hello <b>"},
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"kind": "metrics", "st')  # torn last line
    seen: list[dict[str, Any]] = []
    pump = EventPump(run.pk, 0, events, on_ingested=seen.extend)

    assert pump.pump()
    assert pump.pump()  # nothing new: no duplicate work
    assert len(seen) == 5
    assert MetricPoint.objects.filter(run=run).count() == 2
    assert Checkpoint.objects.filter(run=run, step=1).exists()
    assert RunLog.objects.get(run=run).message == "hello <b>"
    run.refresh_from_db()
    assert (run.step, run.summary["train/reward"]) == (1, 0.5)

    with events.open("a") as fh:  # the writer finishes the torn line
        fh.write('ep": 2, "values": {"train/reward": 1.0}}\n')
    assert pump.pump()
    assert MetricPoint.objects.filter(run=run, key="train/reward").count() == 2


def test_it_forgets_checkpoints_whose_folders_the_trainer_pruned(make_run: Any, tmp_path: Path) -> None:
    run = make_run()
    kept, pruned = tmp_path / "step_000004", tmp_path / "step_000002"
    kept.mkdir()
    ingest.checkpoint_record(run.pk, 2, str(pruned))  # already gone from disk
    ingest.checkpoint_record(run.pk, 4, str(kept))
    ingest.checkpoint_record(run.pk, 6, str(tmp_path / "step_000006"))
    assert sorted(Checkpoint.objects.filter(run=run).values_list("step", flat=True)) == [4, 6]
    assert Run.objects.get(pk=run.pk).last_checkpoint_step == 6
