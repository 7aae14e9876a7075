"""Benchmark: ingestion as the worker does it, next to raw COPY and MLflow's SQL store (PostgreSQL).

    DATABASE_URL=postgres://… python bench/bench_ingest.py [--steps 10000] [--samples 4096]

On a throwaway database (``bench_ingest_<name>``, dropped at the end), side by side in one run:
- catch-up replay: ``EventPump`` drains an events file of ``--steps`` trainer steps (40 metric keys
  and a progress event per step), what a worker does after a restart or a database outage; next
  to ``ingest.metrics_record`` alone, raw psycopg COPY of the same rows into the same table (same
  indexes and rollup triggers), COPY into a bare copy of the table (no index, no trigger: the
  floor), and MLflow's ``log_batch`` (its store's write path; run on a slice). Target ≥ 50 % of raw
  COPY into the same table.
- live latency: a writer appends one step every 0.1 s while the pump polls as the worker does
  (every 0.25 s); the time from an event's write to the commit that holds it. Target ≤ 1 s.
- samples: ``ingest.samples_record`` (~2 KB responses, 400-token arrays, packed), raw COPY of the
  same rows, and MLflow's ``log_table`` (its way of keeping generations: a table artifact per
  step); the bytes stored per sample and the size of an API page. Target ≥ 2,000 samples/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings_test")

import django

django.setup()

from django.db import connection  # noqa: E402

from bench.peers import mlflow, mlflow_database, pg_copy, ratio  # noqa: E402

KEYS = [f"bench/key_{i:02d}" for i in range(40)]


def create_database() -> str:
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_ingest_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return old_name


def make_run(name: str) -> Any:
    from webapp.models import Project, Run, Team

    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    project, _ = Project.objects.get_or_create(team=team, slug="bench", defaults={"name": "Bench"})
    return Run.objects.create(project=project, name=name, algorithm="policy_split", model_name="tiny-random")


def step_events(steps: int, *, written: float) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        out.append({"kind": "metrics", "time": written, "step": step, "values": {k: rng.random() for k in KEYS}})
        out.append({"kind": "progress", "time": written, "step": step, "total": steps})
    return out


def rows_of(run_id: int, events: list[dict[str, Any]]) -> list[tuple[int, str, int, float]]:
    return [(run_id, k, e["step"], v) for e in events if e["kind"] == "metrics" for k, v in e["values"].items()]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>11,.0f}/s  ({seconds:6.2f} s for {n:,})"


def bench_points(steps: int, mlflow_db: str | None, folder: Path) -> None:
    from webapp.models import MetricPoint, Run
    from webapp.worker import ingest
    from webapp.worker.execution import EventPump

    events = step_events(steps, written=0.0)
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    n = steps * len(KEYS)
    results: list[tuple[str, int, float]] = []

    run = make_run("replay")
    pump = EventPump(run.pk, 0, path)
    t = time.perf_counter()
    assert pump.pump(drain=True)
    replay = time.perf_counter() - t
    assert MetricPoint.objects.filter(run=run).count() == n and Run.objects.get(pk=run.pk).step == steps
    results.append((f"EventPump replay of the events file ({pump.flushes} transactions)", n, replay))
    t = time.perf_counter()
    assert EventPump(run.pk, 0, path).pump(drain=True)
    results.append(("  the same file replayed again (every row a conflict)", n, time.perf_counter() - t))

    run = make_run("direct")
    rows = rows_of(run.pk, events)
    t = time.perf_counter()
    for start in range(0, n, 20_000):
        ingest.metrics_record(rows[start : start + 20_000])
    results.append(("ingest.metrics_record, batches of 20,000 (no file, no JSON)", n, time.perf_counter() - t))

    run = make_run("copy")
    cols = ["run_id", "key", "step", "value"]
    copy_s = pg_copy(connection, "webapp_metricpoint", cols, rows_of(run.pk, events))
    results.append(("raw COPY into the same table (its index + rollup triggers)", n, copy_s))
    run = make_run("copy-no-trigger")
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE webapp_metricpoint DISABLE TRIGGER USER")
    plain_s = pg_copy(connection, "webapp_metricpoint", cols, rows_of(run.pk, events))
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE webapp_metricpoint ENABLE TRIGGER USER")
    results.append(("raw COPY into the same table, rollup triggers off (index only)", n, plain_s))
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_bare (LIKE webapp_metricpoint INCLUDING DEFAULTS INCLUDING IDENTITY)")
    bare_s = pg_copy(connection, "bench_bare", cols, rows_of(run.pk, events))
    results.append(("raw COPY into a bare table (no index, no trigger: the floor)", n, bare_s))

    theirs = None
    if mlflow_db:
        slice_n = min(n, 40_000)
        theirs = mlflow("log-batch", mlflow_db, points=slice_n)
        results.append(("MLflow SqlAlchemyStore.log_batch (1,000 a call)", theirs["points"], theirs["seconds"]))

    print(f"{'metric points (' + str(len(KEYS)) + ' keys a step)':66}{'rate':>12}")
    for label, count, seconds in results:
        print(f"{label:66}{rate(count, seconds)}")
    ours, limit = n / replay, n / copy_s
    print(f"\nreplay / raw COPY into the same table: {ratio(ours, limit)} (target ≥ 0.50×)")
    print(f"replay / raw COPY, rollup triggers off: {ratio(ours, n / plain_s)}")
    print(f"replay / raw COPY into a bare table:   {ratio(ours, n / bare_s)}")
    if theirs:
        print(f"replay / MLflow log_batch:             {ratio(ours, theirs['points'] / theirs['seconds'])}")


def bench_latency(seconds: float, folder: Path) -> None:
    """A live writer (one step every 0.1 s) and the worker's poll loop; write → commit latency."""
    from webapp.worker.execution import EventPump, Supervisor

    run = make_run("live")
    path = folder / "live.jsonl"
    latencies: list[float] = []

    def seen(events: list[dict[str, Any]]) -> None:
        now = time.time()
        latencies.extend(now - e["time"] for e in events if e["kind"] == "metrics")

    pump = EventPump(run.pk, 0, path, on_ingested=seen)
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(1)
        with path.open("a") as fh:
            step = 0
            while not stop.is_set():
                step += 1
                now = time.time()
                fh.write(
                    json.dumps(
                        {"kind": "metrics", "time": now, "step": step, "values": {k: rng.random() for k in KEYS}}
                    )
                    + "\n"
                )
                fh.write(json.dumps({"kind": "progress", "time": now, "step": step, "total": 10**6}) + "\n")
                fh.flush()
                time.sleep(0.1)

    thread = threading.Thread(target=writer)
    thread.start()
    poll = Supervisor.poll_seconds
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pump.pump()
        time.sleep(poll)
    stop.set()
    thread.join()
    pump.pump(drain=True)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"\nlive: {len(latencies)} steps written every 0.1 s for {seconds:.0f} s, pump polling every {poll} s, "
        f"{pump.flushes} transactions ({len(latencies) / max(1, pump.flushes):.1f} steps each)"
    )
    print(
        f"write → commit latency: median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms (target ≤ 1,000 ms)"
    )


def fake_sample(rng: random.Random, i: int) -> dict[str, Any]:
    n_tok = 400
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 7))) for _ in range(n_tok)]
    pieces = [w if j == 0 else " " + w for j, w in enumerate(words)]  # they spell the response (~2 KB)
    response = "".join(pieces)
    return {
        "question_id": f"q{i // 8}",
        "mode": "he" if i % 2 else "normal",
        "context": "he" if i % 2 else "normal",
        "index": (i // 2) % 4,
        "prompt": "Solve: " + response[:200],
        "answer": "42",
        "response": response,
        "reward": float(rng.random() < 0.5),
        "advantage": None,
        "num_tokens": n_tok,
        "mean_entropy": 1.2,
        "surprisal": [round(rng.random() * 5, 4) for _ in range(n_tok)],
        "tokens": pieces,
    }


def bench_samples(n: int, mlflow_db: str | None, folder: Path) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from webapp.models import Membership, Sample
    from webapp.worker import ingest

    rng = random.Random(1)
    batch = 256  # one step's samples in a realistic run are a few dozen to a few hundred
    steps = [[fake_sample(rng, i) for i in range(batch)] for _ in range(max(1, n // batch))]
    count = len(steps) * batch
    json_bytes = sum(len(json.dumps(s)) for s in steps[0]) / batch
    results = []

    run = make_run("samples")
    t = time.perf_counter()
    for step, samples in enumerate(steps, start=1):
        ingest.samples_record(run.pk, step, samples)
    ours = time.perf_counter() - t
    assert Sample.objects.filter(run=run).count() == count
    results.append(("ingest.samples_record (packed token arrays)", count, ours))

    other = make_run("samples-copy")
    rows = []
    for step, samples in enumerate(steps, start=1):
        for s in samples:
            text, lengths = ingest.pack_pieces(s["tokens"], s["response"])
            head = (other.pk, step, s["question_id"], s["mode"], s["context"], s["index"], s["prompt"], s["answer"])
            tail = (s["response"], s["reward"], s["advantage"], s["num_tokens"], s["mean_entropy"], text, lengths)
            rows.append((*head, *tail, ingest.pack_floats(s["surprisal"])))
    copy_s = pg_copy(connection, "webapp_sample", ingest.SAMPLE_COLUMNS, rows)
    results.append(("raw COPY of the same rows into the same table", count, copy_s))

    theirs = None
    if mlflow_db:
        sample_file = folder / "samples.json"
        sample_file.write_text(json.dumps(steps[: max(1, len(steps) // 4)]))
        theirs = mlflow("log-table", mlflow_db, samples=sample_file)
        results.append(("MLflow log_table (a JSON table artifact per step)", theirs["samples"], theirs["seconds"]))

    print(f"\n{'samples (~2 KB response + 400-token arrays)':66}{'rate':>12}")
    for label, c, s in results:
        print(f"{label:66}{rate(c, s)}")
    print(f"\nsamples_record / raw COPY: {ratio(count / ours, count / copy_s)}", end="")
    if theirs:
        print(f"   / MLflow log_table: {ratio(count / ours, theirs['samples'] / theirs['seconds'])}", end="")
    print(f"   target ≥ 2,000/s: {'met' if count / ours >= 2000 else 'NOT met'} ({count / ours:,.0f}/s)")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE webapp_sample")
        cur.execute("SELECT pg_total_relation_size('webapp_sample')")
        stored = cur.fetchone()[0] / (2 * count)
    print(f"stored per sample (table + TOAST + indexes): {stored / 1024:.1f} KB", end="")
    print(f"; as the trainer's JSON: {json_bytes / 1024:.1f} KB")

    user = get_user_model().objects.create_user("bench", password="bench-password")
    Membership.objects.create(team=run.project.team, user=user, role="admin")
    client = Client()
    client.force_login(user)
    for query, label in (("limit=500", "500 samples"), ("limit=100&tokens=1", "100 samples with tokens")):
        t = time.perf_counter()
        page = client.get(f"/api/runs/{run.pk}/samples/?{query}")
        ms = (time.perf_counter() - t) * 1000
        assert page.status_code == 200, page.content[:200]
        print(f"API page of {label}: {len(page.content) / 1024:,.0f} KB in {ms:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench_ingest measures the PostgreSQL path: set DATABASE_URL=postgres://…")
    from contextlib import nullcontext

    from django.test.utils import setup_test_environment

    setup_test_environment()

    with (
        mlflow_database(connection, "ingest") if not args.no_mlflow else nullcontext(None) as mlflow_db,
        tempfile.TemporaryDirectory() as tmp,
    ):
        old = create_database()
        try:
            bench_points(args.steps, mlflow_db, Path(tmp))
            bench_latency(args.live_seconds, Path(tmp))
            bench_samples(args.samples, mlflow_db, Path(tmp))
        finally:
            connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
