"""Benchmark: the compare page for 20 runs × 5 keys, next to MLflow's compare reads.

    DATABASE_URL=postgres://… python bench/bench_compare.py [--runs 20] [--keys 5] [--points 20000]

On a throwaway database (``bench_compare_<name>``, dropped at the end): ``--runs`` runs with
``--keys`` lines of ``--points`` points each, loaded with COPY (rollups by the trigger). Prints for
the compare page (its HTML) and its chart data (the JSON the page's script fetches): the median
server time, the number of queries (also for 2 runs × 1 key: it must not grow), the size, and
whether a query touched the point table (long lines must come from the rollups). Next to it in the
same run: MLflow's store answering the same chart (one ``get_metric_history_bulk_interval`` per
key over all runs, max_results 1,000, what its compare view asks) on the same points.
``--explain`` prints the plans of the chart data's reads of the rollups and points.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings_test")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from bench.peers import mlflow, mlflow_database, ratio  # noqa: E402


def create_database() -> str:
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_compare_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return old_name


def measure(client: Any, url: str, repeat: int) -> tuple[float, int, int, bool, Any]:
    client.get(url)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    touched = any("webapp_metricpoint" in q["sql"] for q in ctx.captured_queries)
    return statistics.median(times), len(ctx.captured_queries), len(response.content), touched, response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print the plans of the chart data's line reads")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench_compare measures the PostgreSQL path: set DATABASE_URL=postgres://…")
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from webapp.models import Membership, Project, Run, Team

    setup_test_environment()
    theirs = None
    if not args.no_mlflow:
        with mlflow_database(connection, "compare") as db:
            theirs = mlflow(
                "compare", db, runs=args.runs, keys=args.keys, points=args.points, max_results=1000, repeat=args.repeat
            )
    old_name = create_database()
    try:
        team = Team.objects.create(name="Bench", slug="bench")
        project = Project.objects.create(team=team, name="Bench", slug="bench")
        user = get_user_model().objects.create_user("bench", password="bench-password")
        Membership.objects.create(team=team, user=user, role="admin")
        keys = [f"key_{k}" for k in range(args.keys)]
        runs = [
            Run.objects.create(
                project=project,
                name=f"run {i}",
                algorithm="policy_split" if i % 2 else "grpo",
                model_name="tiny-random",
                seed=i,
                summary={k: 0.5 for k in keys},
            )
            for i in range(args.runs)
        ]
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            with cur.cursor.copy("COPY webapp_metricpoint (run_id, key, step, value) FROM STDIN") as copy:
                for i, run in enumerate(runs):
                    for k in keys:
                        for step in range(args.points):
                            copy.write_row((run.pk, k, step, (i + step) % 7 * 0.1))
            cur.execute("VACUUM ANALYZE")
        total = args.runs * args.keys * args.points
        took = time.perf_counter() - t0
        print(f"loaded {total:,} points ({args.runs} runs × {args.keys} keys × {args.points:,}) in {took:.0f} s\n")
        client = Client()
        client.force_login(user)
        base = reverse("webapp-compare", args=[project.pk])
        header = f"{'request':<44}{'median':>10}{'queries':>9}{'KB':>8}  reads the point table"
        print(header)
        print("-" * len(header))
        figures = {}
        for label, rs, ks in (
            (f"{args.runs} runs × {args.keys} keys", runs, keys),
            ("2 runs × 1 key", runs[:2], keys[:1]),
            (f"{args.runs} runs × {args.keys} keys, grouped by algorithm", runs, keys),
        ):
            query = f"?runs={','.join(str(r.pk) for r in rs)}&keys={','.join(ks)}"
            if "grouped" in label:
                query += "&group=algorithm"
            page_ms, page_q, page_kb, _, page = measure(client, base + query, args.repeat)
            data_ms, data_q, data_kb, touched, _ = measure(client, page.context["charts_url"], args.repeat)
            print(f"{'page  ' + label:<44}{page_ms:>7.1f} ms{page_q:>9}{page_kb / 1024:>8.0f}")
            reads = "yes" if touched else "no"
            print(f"{'data  ' + label:<44}{data_ms:>7.1f} ms{data_q:>9}{data_kb / 1024:>8.0f}  {reads}")
            figures[label] = (page_ms, data_ms)
        if theirs:
            ours = sum(figures[f"{args.runs} runs × {args.keys} keys"])
            print(
                f"\nMLflow: {theirs['calls']} get_metric_history_bulk_interval calls over {args.runs} runs, "
                f"{theirs['points']:,} points, {theirs['ms']:.1f} ms"
            )
            print(f"ours (page + chart data, over HTTP) / MLflow (store reads only): {ratio(ours, theirs['ms'])}")
        if args.explain:
            query = f"?runs={','.join(str(r.pk) for r in runs)}&keys={','.join(keys)}"
            page = client.get(base + query)
            with CaptureQueriesContext(connection) as ctx:
                client.get(page.context["charts_url"])
            for q in ctx.captured_queries:
                if "webapp_metric" not in q["sql"]:
                    continue
                print(f"\n=== EXPLAIN (chart data, {args.runs} runs × {args.keys} keys) ===")
                print(f"-- {' '.join(q['sql'].split())[:200]}…\n")
                with connection.cursor() as cur:
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + q["sql"])
                    print("\n".join(r[0] for r in cur.fetchall()))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
