"""Ingestion is batched and idempotent: replays never duplicate, resumes rewind cleanly."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from webapp.models import Checkpoint, MetricPoint, Run, RunLog, Sample
from webapp.worker import ingest
from webapp.worker.execution import EventPump

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


def _step_events(steps: range, *, written: float = 0.0, keys: int = 20) -> list[dict[str, Any]]:
    """What a trainer writes per step: its metrics, then its progress (every 10th step: samples)."""
    out: list[dict[str, Any]] = []
    for step in steps:
        out.append(
            {"kind": "metrics", "time": written, "step": step, "values": {f"k/{i}": step + i for i in range(keys)}}
        )
        if step % 10 == 0:
            out.append({"kind": "samples", "time": written, "step": step, "samples": [_sample(0)]})
        out.append({"kind": "progress", "time": written, "step": step, "total": steps.stop - 1})
    return out


def _write(path: Path, events: list[dict[str, Any]]) -> None:
    with path.open("a") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events))


def test_the_event_pump_writes_many_steps_in_one_transaction(
    make_run: Any, tmp_path: Path, django_assert_max_num_queries: Any
) -> None:
    run = make_run(status="running")
    events = tmp_path / "events.jsonl"
    _write(events, _step_events(range(1, 201)))
    pump = EventPump(run.pk, 0, events)
    with django_assert_max_num_queries(20):  # not 3 per step: one batch for all 200 steps
        assert pump.pump()
    assert pump.flushes == 1
    run.refresh_from_db()
    assert (run.step, run.total_steps, run.summary["k/3"]) == (200, 200, 203)
    assert MetricPoint.objects.filter(run=run).count() == 200 * 20
    assert Sample.objects.filter(run=run).count() == 20


def test_the_event_pump_holds_a_young_batch_until_it_is_half_a_second_old(make_run: Any, tmp_path: Path) -> None:
    run = make_run(status="running")
    events = tmp_path / "events.jsonl"
    _write(events, _step_events(range(1, 3), written=time.time()))
    pump = EventPump(run.pk, 0, events, flush_seconds=0.5)
    assert pump.pump()
    assert (pump.flushes, MetricPoint.objects.filter(run=run).count()) == (0, 0)
    time.sleep(0.55)
    assert pump.pump()  # nothing new in the file, but the batch is now due
    assert pump.flushes == 1
    assert MetricPoint.objects.filter(run=run).count() == 40
    assert Run.objects.get(pk=run.pk).step == 2


def test_the_event_pump_flushes_a_full_batch_without_waiting(make_run: Any, tmp_path: Path) -> None:
    run = make_run(status="running")
    events = tmp_path / "events.jsonl"
    _write(events, _step_events(range(1, 51), written=time.time()))
    pump = EventPump(run.pk, 0, events, flush_rows=500, flush_seconds=60)
    assert pump.pump()
    assert pump.flushes == 1 and pump.offset == events.stat().st_size
    assert MetricPoint.objects.filter(run=run).count() == 50 * 20


def test_a_replayed_events_file_changes_nothing(make_run: Any, tmp_path: Path) -> None:
    run = make_run(status="running")
    events = tmp_path / "events.jsonl"
    _write(events, _step_events(range(1, 31)))
    assert EventPump(run.pk, 0, events).pump()
    before = list(MetricPoint.objects.filter(run=run).order_by("key", "step").values_list("key", "step", "value"))
    assert EventPump(run.pk, 0, events).pump()  # a restarted worker reads the file from the start
    after = list(MetricPoint.objects.filter(run=run).order_by("key", "step").values_list("key", "step", "value"))
    assert after == before and Sample.objects.filter(run=run).count() == 3


def test_a_rejected_flush_writes_nothing_of_its_batch_and_moves_no_progress(make_run: Any, tmp_path: Path) -> None:
    from django.db import DataError

    run = make_run(status="running")
    events = tmp_path / "events.jsonl"
    # PostgreSQL rejects the checkpoint path (longer than its column) after the points are written.
    _write(events, [*_step_events(range(1, 6)), {"kind": "checkpoint", "step": 5, "path": "/x" * 400}])
    pump = EventPump(run.pk, 0, events)
    with pytest.raises(DataError):  # supervision fails the run (a retry could never succeed)
        pump.pump()
    assert pump.offset == 0
    assert not MetricPoint.objects.filter(run=run).exists()
    assert Run.objects.get(pk=run.pk).step == 0


def _expected_rollups(points: dict[int, float], key: str, run_id: int) -> set[tuple[Any, ...]]:
    """Rollup rows computed the slow way from the raw points (level 0 = the whole line)."""
    from webapp.models import ROLLUP_FANOUT, ROLLUP_LEVELS

    out = set()
    for level in range(ROLLUP_LEVELS + 1):
        buckets: dict[int, list[tuple[int, float]]] = {}
        for step, value in points.items():
            buckets.setdefault(step // ROLLUP_FANOUT**level if level else 0, []).append((step, value))
        for bucket, pts in buckets.items():
            lo = min(pts, key=lambda p: (p[1], p[0]))
            hi = max(pts, key=lambda p: (p[1], -p[0]))
            steps = [s for s, _ in pts]
            out.add((run_id, key, level, bucket, len(pts), min(steps), max(steps), lo[1], lo[0], hi[1], hi[0]))
    return out


def _stored_rollups(run_id: int) -> set[tuple[Any, ...]]:
    from webapp.models import MetricRollup

    fields = ("run_id", "key", "level", "bucket", "n", "min_step", "max_step", "lo_value", "lo_step", "hi_value")
    return set(MetricRollup.objects.filter(run_id=run_id).values_list(*fields, "hi_step"))


def test_ingestion_maintains_the_rollups_exactly_through_replays_and_rewinds(make_run: Any) -> None:
    import random

    run = make_run()
    rng = random.Random(3)
    points = {step: float(rng.choice([0, 1, 2, rng.random()])) for step in range(0, 3000, 3)}  # ties included
    rows = [(run.pk, "k", s, v) for s, v in points.items()]
    rng.shuffle(rows)
    for start in range(0, len(rows), 137):
        ingest.metrics_record(rows[start : start + 137])
    ingest.metrics_record(rows[:500])  # a replayed part changes nothing
    assert _stored_rollups(run.pk) == _expected_rollups(points, "k", run.pk)

    ingest.run_rewind(run.pk, to_step=1000)
    kept = {s: v for s, v in points.items() if s <= 1000}
    assert _stored_rollups(run.pk) == _expected_rollups(kept, "k", run.pk)


def test_the_heatmap_arrays_round_trip_through_their_packed_form() -> None:
    from webapp.models import pack_floats, pack_pieces, unpack_floats, unpack_pieces

    pieces = ["Hé", "llo", "", " 🌍", "\x00\t\\N", "x" * 70_000]  # a piece past uint16 switches to uint32
    assert unpack_pieces(*pack_pieces(pieces)) == pieces
    assert unpack_pieces(*pack_pieces(pieces[:4])) == pieces[:4]
    assert pack_pieces(pieces[:4])[1][:1] == b"H" and pack_pieces(pieces)[1][:1] == b"I"
    assert pack_pieces(["Hé", "llo"], "Héllo")[0] == ""  # spelled the response: not stored twice
    assert unpack_pieces(*pack_pieces(["Hé", "llo"], "Héllo"), "Héllo") == ["Hé", "llo"]
    assert pack_pieces(["Hé", "llo"], "Hello")[0] == "Héllo"
    assert unpack_floats(pack_floats([0.0, 1.2345, 17.0001, 3.1])) == [0.0, 1.2345, 17.0001, 3.1]
    assert unpack_pieces(*pack_pieces([])) == [] and unpack_floats(pack_floats([])) == []


def test_ingestion_writes_every_stored_field_of_a_sample() -> None:
    stored = [f.attname for f in Sample._meta.concrete_fields]
    assert ["id", *ingest.SAMPLE_COLUMNS] == stored  # a new Sample field joins SAMPLE_VALUE_FIELDS or TOKEN_COLUMNS
