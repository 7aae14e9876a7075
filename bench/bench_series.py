"""Benchmark: one metric line of 1,000,000 points, read at full range and zoomed, next to MLflow.

    DATABASE_URL=postgres://… python bench/bench_series.py [--points 1000000] [--repeat 9] [--explain]

On a throwaway database (``bench_series_<name>``, dropped at the end): one run, one key, a random
walk with a planted +1e6 spike and -1e6 dip, loaded with COPY (the rollup triggers run as they
would for ingestion). Printed side by side, per range, median of ``--repeat``:
- the series endpoint's server time (``/runs/<id>/series/``, Django test client, 1,000 points),
- ``selectors.metric_series`` alone (compared with MLflow's store call: both in-process reads),
  and the naive fetch of every point in the range,
- MLflow's SQL store (``get_metric_history_bulk_interval``, max_results 1,000) on the same points
  in its own schema on the same cluster (bench/peers.py installs MLflow in var/.venv-mlflow),
and whether each kept the spike and the dip. ``--explain`` prints the plans of our queries.
Targets: ≤ 150 ms per 1M-point line and ≤ 0.2× MLflow's time.
"""

from __future__ import annotations

import argparse
import os
import random
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

KEY = "normal/accuracy"
POINTS = 1000


def create_database(prefix: str) -> str:
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{prefix}_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return old_name


def walk(n: int) -> list[float]:
    """The same values as bench/mlflow_peer.py's series command."""
    rng = random.Random(0)
    value, out = 0.0, []
    for step in range(n):
        value += rng.gauss(0, 0.01)
        out.append(1e6 if step == n // 3 else -1e6 if step == 2 * n // 3 else value)
    return out


def median_ms(fn: Any, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench_series measures the PostgreSQL path: set DATABASE_URL=postgres://…")
    from django.contrib.auth import get_user_model
    from django.test import Client

    from webapp.models import Membership, MetricPoint, Project, Run, Team
    from webapp.selectors import metric_series

    setup_test_environment()
    n = args.points
    values = walk(n)
    ranges = [
        ("full range", None, None),
        ("zoom 10%", n // 3 - n // 20, n // 3 + n // 20 - 1),
        ("zoom 1%", 2 * n // 3 - n // 200, 2 * n // 3 + n // 200 - 1),
        ("zoom 1,500 steps", n // 2, n // 2 + 1499),
    ]
    theirs: dict[str, Any] = {}
    if not args.no_mlflow:
        with mlflow_database(connection, "series") as db:
            specs = ["full" if lo is None else f"{lo}:{hi}" for _, lo, hi in ranges]
            result = mlflow("series", db, points=n, key=KEY, max_results=POINTS, range=specs, repeat=args.repeat)
            theirs = {spec: r for spec, r in zip(specs, result["ranges"], strict=True)}
            print(f"MLflow: loaded {n:,} points with COPY in {result['load_s']:.1f} s")

    old_name = create_database("bench_series")
    try:
        team = Team.objects.create(name="Bench", slug="bench")
        project = Project.objects.create(team=team, name="Bench", slug="bench")
        run = Run.objects.create(project=project, name="bench", algorithm="policy_split", model_name="tiny-random")
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            with cur.cursor.copy("COPY webapp_metricpoint (run_id, key, step, value) FROM STDIN") as copy:
                for step, v in enumerate(values):
                    copy.write_row((run.pk, KEY, step, v))
            cur.execute("VACUUM ANALYZE webapp_metricpoint")
            cur.execute("VACUUM ANALYZE webapp_metricrollup")
        load_s = time.perf_counter() - t0
        print(f"ours:   loaded {n:,} points with COPY (rollups maintained by the trigger) in {load_s:.1f} s")
        user = get_user_model().objects.create_user("bench", password="bench-password")
        Membership.objects.create(team=team, user=user, role="admin")
        client = Client()
        client.force_login(user)
        base = f"/runs/{run.pk}/series/?key={KEY}&points={POINTS}"

        print(f"\none line of {n:,} points, {POINTS:,} points drawn; median of {args.repeat} (ms)\n")
        header = (
            f"{'range':<18}{'in range':>10}{'endpoint':>10}{'selector':>10}{'naive':>9}{'MLflow':>9}"
            f"{'sel/MLflow':>13}  spike+dip kept (ours / MLflow)"
        )
        print(header)
        print("-" * len(header))
        verdict = []
        for label, lo, hi in ranges:
            url = base + ("" if lo is None else f"&min_step={lo}&max_step={hi}")
            endpoint = median_ms(lambda url=url: client.get(url), args.repeat)
            series = metric_series(run, KEY, min_step=lo, max_step=hi, max_points=POINTS)
            selector = median_ms(
                lambda lo=lo, hi=hi: metric_series(run, KEY, min_step=lo, max_step=hi, max_points=POINTS), args.repeat
            )
            first, last = lo or 0, n - 1 if hi is None else hi

            def naive(first: int = first, last: int = last) -> Any:
                qs = MetricPoint.objects.filter(run=run, key=KEY, step__gte=first, step__lte=last).order_by("step")
                return list(qs.values_list("step", "value"))

            naive_ms = median_ms(naive, max(1, args.repeat // 3))
            ours_kept = all(v in series.values for s, v in ((n // 3, 1e6), (2 * n // 3, -1e6)) if first <= s <= last)
            spec = "full" if lo is None else f"{lo}:{hi}"
            m = theirs.get(spec)
            m_ms = f"{m['ms']:9.1f}" if m else f"{'-':>9}"
            wanted = [k for s, k in ((n // 3, "keeps_spike"), (2 * n // 3, "keeps_dip")) if first <= s <= last]
            m_kept = ("yes" if all(m[k] for k in wanted) else "NO") if m else "-"
            r = ratio(selector, m["ms"]) if m else "-"  # both: the store's read, in process
            print(
                f"{label:<18}{series.total:>10,}{endpoint:>10.1f}{selector:>10.1f}{naive_ms:>9.1f}{m_ms}{r:>13}"
                f"  {'yes' if ours_kept else 'NO'} / {m_kept}"
            )
            verdict.append((label, endpoint, selector, m["ms"] if m else None))
        full_ms, full_selector, full_mlflow = verdict[0][1], verdict[0][2], verdict[0][3]
        met = "met" if full_ms <= 150 else "NOT met"
        print(f"\ntarget ≤ 150 ms per 1M-point line (endpoint, full range): {met} ({full_ms:.1f} ms)")
        if full_mlflow:
            full = full_selector / full_mlflow
            print(f"target ≤ 0.2× MLflow on that line: {'met' if full <= 0.2 else 'NOT met'} ({full:.3f}×; ", end="")
            print(f"whole HTTP request / MLflow's store call: {full_ms / full_mlflow:.3f}×)")
        with CaptureQueriesContext(connection) as ctx:
            client.get(base)
        print(f"queries per request (full range): {len(ctx.captured_queries)}")
        if args.explain:
            for label, lo, hi in ranges:
                with CaptureQueriesContext(connection) as ctx:
                    metric_series(run, KEY, min_step=lo, max_step=hi, max_points=POINTS)
                print(f"\n=== EXPLAIN ({label}) ===")
                for q in ctx.captured_queries:
                    print(f"-- {q['sql'][:160]}…\n" if len(q["sql"]) > 160 else f"-- {q['sql']}\n")
                    with connection.cursor() as cur:
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + q["sql"])
                        print("\n".join(r[0] for r in cur.fetchall()))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
