"""The MLflow side of the benchmarks: runs in MLflow's own virtualenv (bench/peers.py makes it).

    var/.venv-mlflow/bin/python bench/mlflow_peer.py <command> --db postgresql://… [options]

Never imported by the project (MLflow is not a dependency). Each command prints one JSON object.
Data is loaded the way MLflow would hold it (its own SqlAlchemyStore schema, created by MLflow on
the same PostgreSQL cluster, in a database of its own); bulk data goes in with COPY, like ours, so
that only the reads and the writes being measured differ.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import psycopg2
from mlflow.entities import Metric, ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore


def store(db: str) -> SqlAlchemyStore:
    return SqlAlchemyStore(db, tempfile.mkdtemp(prefix="mlflow-artifacts-"))


def median_ms(fn: Any, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _copy(conn: Any, table: str, columns: list[str], rows: Any) -> None:
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buf.seek(0)
    with conn.cursor() as cur:
        cur.copy_from(buf, table, columns=columns)
    conn.commit()


def _experiment(s: SqlAlchemyStore, name: str) -> str:
    found = s.get_experiment_by_name(name)
    return found.experiment_id if found else s.create_experiment(name)


def _runs(conn: Any, experiment_id: str, n: int, *, start: int = 0) -> list[str]:
    """n runs via COPY into MLflow's runs table (plus their run-name tag)."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    now = int(time.time() * 1000)
    rows = [
        (
            rid,
            f"run {start + i}",
            "LOCAL",
            "bench",
            "",
            "bench",
            "FINISHED",
            now - (n - i) * 1000,
            now,
            None,
            "",
            "active",
            f"file:///tmp/{rid}",
            experiment_id,
        )
        for i, rid in enumerate(ids)
    ]
    cols = [
        "run_uuid",
        "name",
        "source_type",
        "source_name",
        "entry_point_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "deleted_time",
        "source_version",
        "lifecycle_stage",
        "artifact_uri",
        "experiment_id",
    ]
    _copy(conn, "runs", cols, rows)
    _copy(
        conn,
        "tags",
        ["key", "value", "run_uuid"],
        [("mlflow.runName", f"run {start + i}", r) for i, r in enumerate(ids)],
    )
    return ids


def cmd_series(args: argparse.Namespace) -> dict[str, Any]:
    """One run with a --points line (the same random walk and planted ±1e6 as ours), then the
    median time of get_metric_history_bulk_interval over each --range."""
    s = store(args.db)
    conn = psycopg2.connect(args.db.replace("+psycopg2", ""))
    exp = _experiment(s, "bench-series")
    (run_id,) = _runs(conn, exp, 1)
    rng = random.Random(0)
    value = 0.0
    rows = []
    for step in range(args.points):
        value += rng.gauss(0, 0.01)
        v = 1e6 if step == args.points // 3 else -1e6 if step == 2 * args.points // 3 else value
        rows.append((args.key, v, 1_700_000_000_000 + step, run_id, step, False))
    t0 = time.perf_counter()
    _copy(conn, "metrics", ["key", "value", "timestamp", "run_uuid", "step", "is_nan"], rows)
    load_s = time.perf_counter() - t0
    _copy(
        conn,
        "latest_metrics",
        ["key", "value", "timestamp", "step", "is_nan", "run_uuid"],
        [(args.key, rows[-1][1], rows[-1][2], rows[-1][4], False, run_id)],
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE metrics")
    out: dict[str, Any] = {"load_s": load_s, "ranges": []}
    for spec in args.range:
        lo, hi = (None, None) if spec == "full" else map(int, spec.split(":"))

        def read(lo: Any = lo, hi: Any = hi) -> list[Any]:
            return s.get_metric_history_bulk_interval([run_id], args.key, args.max_results, lo, hi)

        got = read()
        values = {m.value for m in got}
        out["ranges"].append(
            {
                "range": spec,
                "ms": median_ms(read, args.repeat),
                "points": len(got),
                "keeps_spike": 1e6 in values,
                "keeps_dip": -1e6 in values,
            }
        )
    return out


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:
    """--runs runs × --keys keys of --points each; the compare chart's reads: one bulk-interval
    call per key over all runs (what MLflow's compare view asks its server)."""
    s = store(args.db)
    conn = psycopg2.connect(args.db.replace("+psycopg2", ""))
    exp = _experiment(s, "bench-compare")
    ids = _runs(conn, exp, args.runs)
    keys = [f"key_{k}" for k in range(args.keys)]
    rows = [
        (k, (i + step) % 7 * 0.1, 1_700_000_000_000 + step, rid, step, False)
        for i, rid in enumerate(ids)
        for k in keys
        for step in range(args.points)
    ]
    _copy(conn, "metrics", ["key", "value", "timestamp", "run_uuid", "step", "is_nan"], rows)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE metrics")

    def read() -> int:
        return sum(len(s.get_metric_history_bulk_interval(ids, k, args.max_results, None, None)) for k in keys)

    return {"ms": median_ms(read, args.repeat), "points": read(), "calls": len(keys)}


def cmd_log_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Metric ingestion through the store's own write path (log_batch, 1,000 metrics a call: its limit)."""
    s = store(args.db)
    exp = _experiment(s, "bench-ingest")
    run = s.create_run(exp, "bench", int(time.time() * 1000), [], "ingest")
    keys = [f"bench/key_{i:02d}" for i in range(20)]
    metrics = [Metric(keys[i % 20], random.random(), 1_700_000_000_000 + i, i // 20) for i in range(args.points)]
    t0 = time.perf_counter()
    for start in range(0, len(metrics), 1000):
        s.log_batch(run.info.run_id, metrics[start : start + 1000], [], [])
    seconds = time.perf_counter() - t0
    return {"points": len(metrics), "seconds": seconds}


def cmd_log_table(args: argparse.Namespace) -> dict[str, Any]:
    """Samples the MLflow way: one table artifact per step (log_table: JSON files + a tag)."""
    import mlflow

    mlflow.set_tracking_uri(args.db)
    mlflow.set_experiment("bench-samples")
    with open(args.samples) as fh:
        steps = json.load(fh)
    t0 = time.perf_counter()
    with mlflow.start_run():
        for i, samples in enumerate(steps):
            table = {k: [sm[k] for sm in samples] for k in samples[0]}
            mlflow.log_table(table, artifact_file=f"samples/step_{i:05d}.json")
    seconds = time.perf_counter() - t0
    return {"samples": sum(len(x) for x in steps), "seconds": seconds}


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    """--runs runs with 20 latest metrics and 30 params each; search_runs' first page (newest first),
    and a search by name (what a run picker asks)."""
    s = store(args.db)
    conn = psycopg2.connect(args.db.replace("+psycopg2", ""))
    exp = _experiment(s, "bench-runs")
    ids = _runs(conn, exp, args.runs)
    rng = random.Random(0)
    _copy(
        conn,
        "latest_metrics",
        ["key", "value", "timestamp", "step", "is_nan", "run_uuid"],
        [(f"m/key_{k:02d}", rng.random(), 0, 100, False, r) for r in ids for k in range(20)],
    )
    _copy(
        conn,
        "params",
        ["key", "value", "run_uuid"],
        [(f"p_{k:02d}", str(rng.random()), r) for r in ids for k in range(30)],
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")

    def first_page() -> int:
        return len(
            s.search_runs([exp], "", ViewType.ACTIVE_ONLY, max_results=50, order_by=["attributes.start_time DESC"])
        )

    def by_name() -> int:
        return len(s.search_runs([exp], "attributes.run_name ILIKE '%run 12%'", ViewType.ACTIVE_ONLY, max_results=20))

    return {"first_page_ms": median_ms(first_page, args.repeat), "search_ms": median_ms(by_name, args.repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("series", "compare", "log-batch", "log-table", "runs"):
        p = sub.add_parser(name)
        p.add_argument("--db", required=True)
        p.add_argument("--repeat", type=int, default=7)
        p.add_argument("--points", type=int, default=100_000)
        p.add_argument("--key", default="normal/accuracy")
        p.add_argument("--max-results", type=int, default=1000)
        p.add_argument("--range", action="append", default=[])
        p.add_argument("--runs", type=int, default=20)
        p.add_argument("--keys", type=int, default=5)
        p.add_argument("--samples", default="")
    args = parser.parse_args()
    command = {
        "series": cmd_series,
        "compare": cmd_compare,
        "log-batch": cmd_log_batch,
        "log-table": cmd_log_table,
        "runs": cmd_runs,
    }[args.command]
    print(json.dumps(command(args)))


if __name__ == "__main__":
    sys.exit(main())
