"""Benchmark: ingestion of what a trainer emits, as the worker writes it (PostgreSQL).

    DATABASE_URL=postgres://… python bench/bench_ingest.py [--points 200000] [--samples 4000]

Side by side in one run, on a throwaway database (``bench_ingest_<name>``, dropped at the end):
- metric points: ``ingest.metrics_record`` (COPY into a temp table + one upsert) in batches of
  5,000, next to a naive ORM ``save()`` loop and next to raw psycopg COPY straight into the table
  (the practical limit: no conflict handling at all). Target ≥ 50,000 points/s.
- samples: ``ingest.samples_record`` with ~2 KB responses and their per-token surprisal and token
  arrays. Target ≥ 2,000 samples/s.
"""

from __future__ import annotations

import argparse
import os
import random
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings_test")

import django

django.setup()

from django.db import connection  # noqa: E402

KEYS = [f"bench/key_{i:02d}" for i in range(20)]


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


def points(run_id: int, n: int) -> list[tuple[int, str, int, float]]:
    rng = random.Random(0)
    return [(run_id, KEYS[i % len(KEYS)], i // len(KEYS), rng.random()) for i in range(n)]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f}/s  ({seconds:6.2f} s for {n:,})"


def bench_metrics(n: int) -> dict[str, float]:
    from webapp import ingest
    from webapp.models import MetricPoint

    results = {}
    run = make_run("naive")
    naive_n = min(n, 20_000)  # the naive loop is slow; measure it on a slice
    rows = points(run.pk, naive_n)
    t = time.perf_counter()
    for r, k, s, v in rows:
        MetricPoint(run_id=r, key=k, step=s, value=v).save()
    results["naive ORM save() loop"] = (naive_n, time.perf_counter() - t)

    run = make_run("ours")
    rows = points(run.pk, n)
    t = time.perf_counter()
    for start in range(0, n, 5000):
        ingest.metrics_record(rows[start : start + 5000])
    results["ingest.metrics_record (COPY + upsert, batches of 5,000)"] = (n, time.perf_counter() - t)
    t = time.perf_counter()
    for start in range(0, n, 5000):
        ingest.metrics_record(rows[start : start + 5000])  # a replayed file: every row conflicts
    results["  same batches replayed (all conflicts, idempotent)"] = (n, time.perf_counter() - t)
    assert MetricPoint.objects.filter(run=run).count() == n

    run = make_run("copy")
    rows = points(run.pk, n)
    t = time.perf_counter()
    with (
        connection.cursor() as cur,
        cur.cursor.copy("COPY webapp_metricpoint (run_id, key, step, value) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
    results["raw psycopg COPY into the table (limit)"] = (n, time.perf_counter() - t)
    return results


def fake_sample(rng: random.Random, i: int) -> dict[str, Any]:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(340)]
    response = " ".join(words)[:2048]
    n_tok = 400
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
        "tokens": words[:n_tok],
    }


def bench_samples(n: int) -> dict[str, float]:
    from webapp import ingest
    from webapp.models import Sample

    run = make_run("samples")
    rng = random.Random(1)
    batch = 256  # one step's samples in a realistic run are a few dozen to a few hundred
    steps = [[fake_sample(rng, i) for i in range(batch)] for _ in range(n // batch)]
    t = time.perf_counter()
    for step, samples in enumerate(steps, start=1):
        ingest.samples_record(run.pk, step, samples)
    took = time.perf_counter() - t
    count = Sample.objects.filter(run=run).count()
    assert count == len(steps) * batch
    return {"ingest.samples_record (~2 KB response + 400-token arrays)": (count, took)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=4096)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench_ingest measures the PostgreSQL path: set DATABASE_URL=postgres://…")
    old = create_database()
    try:
        print(f"{'metric points':60}{'rate':>14}")
        for label, (n, s) in bench_metrics(args.points).items():
            print(f"{label:60}{rate(n, s)}")
        print(f"\n{'samples':60}{'rate':>14}")
        for label, (n, s) in bench_samples(args.samples).items():
            print(f"{label:60}{rate(n, s)}")
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


if __name__ == "__main__":
    main()
