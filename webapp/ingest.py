"""Batched, idempotent writes of what a trainer emits: metric points, samples, logs, checkpoints.

Metric points are upserted on (run, key, step): on PostgreSQL through COPY into a temporary
table and one ``INSERT … ON CONFLICT``; elsewhere with a multi-row upsert. A retried batch, or
a replayed events file, therefore never duplicates a row, and a re-run step after a resume
replaces the values of the abandoned attempt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from webapp.models import Checkpoint, MetricPoint, Run, RunLog, Sample

MetricRow = tuple[int, str, int, float]  # (run_id, key, step, value)


def metrics_record(rows: Sequence[MetricRow]) -> int:
    """Upsert metric points; returns the number of rows sent. Non-finite values are dropped."""
    clean = _dedupe([r for r in rows if math.isfinite(r[3])])
    if not clean:
        return 0
    if connection.vendor == "postgresql":
        _pg_copy_upsert(clean)
    else:
        MetricPoint.objects.bulk_create(
            [MetricPoint(run_id=r, key=k, step=s, value=v) for r, k, s, v in clean],
            batch_size=500, update_conflicts=True, unique_fields=["run", "key", "step"], update_fields=["value"],
        )
    return len(clean)


def _dedupe(rows: Iterable[MetricRow]) -> list[MetricRow]:
    # ON CONFLICT cannot touch the same row twice in one statement; the last value wins.
    latest: dict[tuple[int, str, int], float] = {}
    for run_id, key, step, value in rows:
        latest[(run_id, key, step)] = value
    return [(r, k, s, v) for (r, k, s), v in latest.items()]


def _pg_copy_upsert(rows: Sequence[MetricRow]) -> None:
    table = MetricPoint._meta.db_table
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _metric_in (run_id bigint, key varchar(80), step integer, "
            "value double precision) ON COMMIT DELETE ROWS"
        )
        raw = cur.cursor  # the psycopg cursor behind Django's wrapper
        with raw.copy("COPY _metric_in (run_id, key, step, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {table} (run_id, key, step, value) SELECT run_id, key, step, value FROM _metric_in "
            "ON CONFLICT (run_id, key, step) DO UPDATE SET value = EXCLUDED.value"
        )


def summary_update(run_id: int, latest: dict[str, float], step: int) -> None:
    """Merge the last value of each key into Run.summary (the runs list sorts on it)."""
    if not latest:
        return
    with transaction.atomic():
        run = Run.objects.select_for_update().only("summary", "step").get(pk=run_id)
        run.summary = {**run.summary, **{k: v for k, v in latest.items() if math.isfinite(v)}}
        run.save(update_fields=["summary"])


SAMPLE_FIELDS = ("question_id", "mode", "context", "index", "prompt", "answer", "response", "reward", "advantage",
                 "length", "entropy", "surprisal", "tokens")


def samples_record(run_id: int, step: int, samples: Iterable[dict[str, Any]]) -> int:
    objs = [
        Sample(
            run_id=run_id, step=step, question_id=s["question_id"][:100], mode=s["mode"], context=s["context"],
            index=s["index"], prompt=s.get("prompt", ""), answer=s.get("answer", ""), response=s["response"],
            reward=s["reward"], advantage=s.get("advantage"), length=s["num_tokens"], entropy=s.get("mean_entropy"),
            surprisal=s.get("surprisal", []), tokens=s.get("tokens", []),
        )
        for s in samples
    ]
    Sample.objects.bulk_create(objs, batch_size=200, ignore_conflicts=True)
    return len(objs)


def logs_record(run_id: int, attempt: int, first_seq: int, lines: Sequence[tuple[str, str]]) -> None:
    RunLog.objects.bulk_create(
        [RunLog(run_id=run_id, attempt=attempt, seq=first_seq + i, level=level[:10], message=msg)
         for i, (level, msg) in enumerate(lines)],
        ignore_conflicts=True,
    )


def checkpoint_record(run_id: int, step: int, path: str) -> None:
    Checkpoint.objects.update_or_create(run_id=run_id, step=step, defaults={"path": path})
    Run.objects.filter(pk=run_id).update(last_checkpoint_step=step, last_checkpoint_path=path)


def progress_record(run_id: int, step: int, total: int) -> None:
    # Only ever forward: a replayed or late progress event must not move the bar back.
    Run.objects.filter(pk=run_id, step__lte=step).update(step=step, total_steps=total)


def run_rewind(run_id: int, *, to_step: int) -> None:
    """Forget what a previous attempt logged after the checkpoint a resume starts from."""
    MetricPoint.objects.filter(run_id=run_id, step__gt=to_step).delete()
    Sample.objects.filter(run_id=run_id, step__gt=to_step).delete()
    Run.objects.filter(pk=run_id).update(step=to_step)
    Run.objects.filter(pk=run_id, last_checkpoint_step__gt=to_step).update(last_checkpoint_step=F("step"))
