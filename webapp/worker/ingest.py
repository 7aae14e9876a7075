"""Batched, idempotent writes of what a trainer emits: metric points, samples, logs, checkpoints.

On PostgreSQL rows go through COPY into a temporary table and one ``INSERT … SELECT … ON
CONFLICT DO NOTHING`` into the real one; elsewhere through ``bulk_create(ignore_conflicts)``.
A retried batch, or a replayed events file, therefore never duplicates a row. (A resumed run
first forgets what its previous attempt logged after the checkpoint, see ``run_rewind``, so a
re-run step is written afresh rather than merged.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from trainer.metrics import SYSTEM_PREFIX
from webapp.models import (
    ROLLUP_FANOUT,
    ROLLUP_LEVELS,
    SAMPLE_VALUE_FIELDS,
    TOKEN_COLUMNS,
    Checkpoint,
    MetricPoint,
    MetricRollup,
    Run,
    RunLog,
    Sample,
    pack_floats,
    pack_pieces,
)

MetricRow = tuple[int, str, int, float]  # (run_id, key, step, value)


@dataclass
class Batch:
    """Events of one run buffered between two flushes, written by ``batch_record`` in one transaction."""

    run_id: int
    metrics: list[MetricRow] = field(default_factory=list)
    samples: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (step, sample)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    progress: tuple[int, int] | None = None  # (step, total) of the newest progress event
    summary: dict[str, float] = field(default_factory=dict)  # last value of each key

    @property
    def rows(self) -> int:
        return len(self.metrics) + len(self.samples) + len(self.logs) + len(self.checkpoints)

    def __bool__(self) -> bool:
        return bool(self.rows or self.progress or self.summary)

    def add(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "metrics":
            step = event["step"]
            self.metrics.extend((self.run_id, k, step, v) for k, v in event["values"].items())
            self.summary.update(event["values"])
        elif kind == "samples":
            self.samples.extend((event["step"], s) for s in event["samples"])
        elif kind == "progress":
            if self.progress is None or event["step"] >= self.progress[0]:
                self.progress = (event["step"], event["total"])
        elif kind == "checkpoint":
            self.checkpoints.append((event["step"], event["path"]))
        elif kind == "log":
            self.logs.append((event.get("level", "info"), event["message"]))


def batch_record(batch: Batch, *, attempt: int, log_seq: int) -> None:
    """Write a buffered batch in ONE transaction: its points, samples, checkpoints, logs, then the
    run's progress and summary, so progress never runs ahead of the data it reports and a failed
    flush leaves nothing half-written (the pump then re-reads the same events from its file)."""
    with transaction.atomic():
        metrics_record(batch.metrics)
        if batch.samples:
            samples_record_many(batch.run_id, batch.samples)
        for step, path in batch.checkpoints:
            checkpoint_record(batch.run_id, step, path)
        if batch.logs:
            logs_record(batch.run_id, attempt, log_seq, batch.logs)
        if batch.progress is not None:
            progress_record(batch.run_id, *batch.progress)
        summary_update(batch.run_id, batch.summary)


def metrics_record(rows: Sequence[MetricRow]) -> int:
    """Insert metric points, skipping ones already there; returns the number of rows sent.

    On PostgreSQL, triggers of the point table merge the rows actually inserted into the rollups
    (``rollups_merge_sql``, installed by migration 0002), so a replayed batch changes neither.
    """
    clean = [r for r in rows if math.isfinite(r[3])]
    if not clean:
        return 0
    if connection.vendor == "postgresql":
        _pg_copy_insert(MetricPoint, ["run_id", "key", "step", "value"], clean)
    else:
        MetricPoint.objects.bulk_create(
            [MetricPoint(run_id=r, key=k, step=s, value=v) for r, k, s, v in clean],
            batch_size=500,
            ignore_conflicts=True,
        )
    return len(clean)


SHIFT = ROLLUP_FANOUT.bit_length() - 1  # bits of step per level (fan-out 4: 2)


def rollups_merge_sql(points: str) -> str:
    """One statement that aggregates the points of ``points`` (a query yielding run_id, key, step,
    value) into every rollup level and merges them into the rollup table.

    Level 1 groups the points by step >> 2, each next level groups the level below (so the points
    are aggregated once, not once per level), level 0 is the whole line. Arrays compare element by
    element: min(ARRAY[value, step]) is the lowest value at its earliest step, max(ARRAY[value,
    -step]) the highest at its earliest step; a merge keeps the lower/higher pair the same way.
    """
    levels = [
        f"l1 AS (SELECT run_id, key, step >> {SHIFT} AS bucket, count(*) AS n, min(step) AS s0, max(step) AS s1, "
        f"min(ARRAY[value, step::float8]) AS lo, max(ARRAY[value, -step::float8]) AS hi FROM src GROUP BY 1, 2, 3)"
    ]
    for level in range(2, ROLLUP_LEVELS + 1):
        levels.append(
            f"l{level} AS (SELECT run_id, key, bucket >> {SHIFT} AS bucket, sum(n) AS n, min(s0) AS s0, "
            f"max(s1) AS s1, min(lo) AS lo, max(hi) AS hi FROM l{level - 1} GROUP BY 1, 2, 3)"
        )
    levels.append(
        f"l0 AS (SELECT run_id, key, 0 AS bucket, sum(n) AS n, min(s0) AS s0, max(s1) AS s1, min(lo) AS lo, "
        f"max(hi) AS hi FROM l{ROLLUP_LEVELS} GROUP BY 1, 2)"
    )
    union = " UNION ALL ".join(
        f"SELECT run_id, key, {level}, bucket, n, s0, s1, lo[1], lo[2]::int, hi[1], (-hi[2])::int FROM l{level}"
        for level in range(ROLLUP_LEVELS + 1)
    )
    lower = "(EXCLUDED.lo_value, EXCLUDED.lo_step) < (r.lo_value, r.lo_step)"
    higher = "(EXCLUDED.hi_value, -EXCLUDED.hi_step) > (r.hi_value, -r.hi_step)"
    return f"""
        WITH src AS ({points}), {", ".join(levels)}
        INSERT INTO {MetricRollup._meta.db_table} AS r
            (run_id, key, level, bucket, n, min_step, max_step, lo_value, lo_step, hi_value, hi_step)
        {union}
        ON CONFLICT (run_id, key, level, bucket) DO UPDATE SET
            n = r.n + EXCLUDED.n,
            min_step = LEAST(r.min_step, EXCLUDED.min_step),
            max_step = GREATEST(r.max_step, EXCLUDED.max_step),
            lo_value = CASE WHEN {lower} THEN EXCLUDED.lo_value ELSE r.lo_value END,
            lo_step = CASE WHEN {lower} THEN EXCLUDED.lo_step ELSE r.lo_step END,
            hi_value = CASE WHEN {higher} THEN EXCLUDED.hi_value ELSE r.hi_value END,
            hi_step = CASE WHEN {higher} THEN EXCLUDED.hi_step ELSE r.hi_step END
    """


def rollups_triggers_sql() -> list[str]:
    """The PostgreSQL functions and statement triggers that keep the rollups equal to the points:
    every INSERT (COPY, ORM, raw SQL) merges the rows it inserted; a DELETE or UPDATE recomputes
    the lines it touched (rare: a resume's rewind, a run's deletion)."""
    points, rollups = MetricPoint._meta.db_table, MetricRollup._meta.db_table
    touched = "SELECT DISTINCT run_id, key FROM psl_changed_points"
    remaining = f"SELECT p.run_id, p.key, p.step, p.value FROM {points} p JOIN ({touched}) t USING (run_id, key)"
    recompute = f"""
        DELETE FROM {rollups} r USING ({touched}) t WHERE r.run_id = t.run_id AND r.key = t.key;
        {rollups_merge_sql(remaining)};
    """
    merge = rollups_merge_sql("SELECT run_id, key, step, value FROM psl_changed_points")
    sql = []
    for name, body in (("insert", merge + ";"), ("recompute", recompute)):
        sql.append(
            f"CREATE OR REPLACE FUNCTION psl_metric_rollups_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN NULL; END $$"
        )
    for event, table, function in (
        ("INSERT", "NEW", "insert"),
        ("DELETE", "OLD", "recompute"),
        ("UPDATE", "NEW", "recompute"),
    ):
        sql.append(
            f"CREATE TRIGGER metric_rollups_{event.lower()} AFTER {event} ON {points} "
            f"REFERENCING {table} TABLE AS psl_changed_points FOR EACH STATEMENT "
            f"EXECUTE FUNCTION psl_metric_rollups_{function}()"
        )
    return sql


def rollups_rebuild(*, run_id: int | None, using: str = "default") -> None:
    """Recompute the rollups of one run, or of every run (migration 0002 does it for old points)."""
    from django.db import connections

    conn = connections[using]
    if conn.vendor != "postgresql":
        return
    where, params = ("WHERE run_id = %s", [run_id]) if run_id is not None else ("", [])
    points = f"SELECT run_id, key, step, value FROM {MetricPoint._meta.db_table} {where}"
    with transaction.atomic(using=using), conn.cursor() as cur:
        cur.execute(f"DELETE FROM {MetricRollup._meta.db_table} {where}", params)
        cur.execute(rollups_merge_sql(points), params)


def _pg_copy_insert(model: Any, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY rows into a temp table shaped like ``model``'s, then insert those not already present."""
    table = model._meta.db_table
    cols = ", ".join(columns)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _in_{table} ON COMMIT DELETE ROWS "
            f"AS SELECT {cols} FROM {table} WITH NO DATA"
        )
        with cur.cursor.copy(f"COPY _in_{table} ({cols}) FROM STDIN") as copy:  # the psycopg cursor
            for row in rows:
                copy.write_row(row)
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _in_{table} ON CONFLICT DO NOTHING")


def summary_update(run_id: int, latest: dict[str, float]) -> None:
    """Merge the last value of each key into Run.summary (the runs list sorts on it)."""
    finite = {k: v for k, v in latest.items() if math.isfinite(v)}
    if not finite:
        return
    if connection.vendor == "postgresql":  # one statement, no read-modify-write round trip
        with connection.cursor() as cur:
            cur.execute(
                f"UPDATE {Run._meta.db_table} SET summary = summary || %s::jsonb WHERE id = %s",
                [json.dumps(finite), run_id],
            )
        return
    with transaction.atomic():
        run = Run.objects.select_for_update().only("summary").get(pk=run_id)
        run.summary = {**run.summary, **finite}
        run.save(update_fields=["summary"])


SAMPLE_COLUMNS = ["run_id", *SAMPLE_VALUE_FIELDS, *TOKEN_COLUMNS]  # the order of a row in samples_record_many


def samples_record(run_id: int, step: int, samples: Iterable[dict[str, Any]]) -> int:
    return samples_record_many(run_id, [(step, s) for s in samples])


def samples_record_many(run_id: int, samples: Sequence[tuple[int, dict[str, Any]]]) -> int:
    """Insert (step, sample) pairs, skipping ones already there; returns the number of rows sent."""
    rows = [
        (
            run_id,
            step,
            s["question_id"][:100],
            s["mode"],
            s["context"],
            s["index"],
            s.get("prompt", ""),
            s.get("answer", ""),
            s["response"],
            s["reward"],
            s.get("advantage"),
            s["num_tokens"],
            s.get("mean_entropy"),
            # The heatmap's arrays, packed here (Sample.tokens / .surprisal unpack them).
            *pack_pieces([str(t) for t in s.get("tokens", [])], s["response"]),
            pack_floats(s.get("surprisal", [])),
        )
        for step, s in samples
    ]
    if connection.vendor == "postgresql":
        _pg_copy_insert(Sample, SAMPLE_COLUMNS, rows)
    else:
        Sample.objects.bulk_create(
            [Sample(**dict(zip(SAMPLE_COLUMNS, r, strict=True))) for r in rows], batch_size=200, ignore_conflicts=True
        )
    return len(rows)


def logs_record(
    run_id: int, attempt: int, first_seq: int, lines: Sequence[tuple[str, str]], *, source: str = "trainer"
) -> None:
    RunLog.objects.bulk_create(
        [
            RunLog(run_id=run_id, attempt=attempt, source=source, seq=first_seq + i, level=level[:10], message=msg)
            for i, (level, msg) in enumerate(lines)
        ],
        ignore_conflicts=True,
    )


def logs_trim(run_id: int, attempt: int, *, source: str, next_seq: int, keep: int) -> int:
    """Keep the newest ``keep`` lines of one source of an attempt (a rotating window); returns how many went."""
    deleted, _ = RunLog.objects.filter(run_id=run_id, attempt=attempt, source=source, seq__lt=next_seq - keep).delete()
    return deleted


def checkpoint_record(run_id: int, step: int, path: str) -> None:
    Checkpoint.objects.update_or_create(run_id=run_id, step=step, defaults={"path": path})
    # The trainer keeps only the last few checkpoint folders; forget the ones it pruned.
    gone = [c.pk for c in Checkpoint.objects.filter(run_id=run_id, step__lt=step) if not os.path.isdir(c.path)]
    Checkpoint.objects.filter(pk__in=gone).delete()
    Run.objects.filter(pk=run_id).update(last_checkpoint_step=step, last_checkpoint_path=path)


def progress_record(run_id: int, step: int, total: int) -> None:
    # Only ever forward: a replayed or late progress event must not move the bar back.
    Run.objects.filter(pk=run_id, step__lte=step).update(step=step, total_steps=total)


def run_rewind(run_id: int, *, to_step: int) -> None:
    """Forget what a previous attempt logged after the checkpoint a resume starts from."""
    # System metrics count seconds, not steps: they are kept (trainer.metrics.SYSTEM_METRICS).
    points = MetricPoint.objects.filter(run_id=run_id, step__gt=to_step).exclude(key__startswith=SYSTEM_PREFIX)
    points.delete()  # its trigger fixes the rollups
    Sample.objects.filter(run_id=run_id, step__gt=to_step).delete()
    Run.objects.filter(pk=run_id).update(step=to_step)
    Run.objects.filter(pk=run_id, last_checkpoint_step__gt=to_step).update(last_checkpoint_step=F("step"))
