"""Benchmark: metric series down-sampling on a run with 1,000,000 points over 10 keys.

    DATABASE_URL=postgres://… python bench/bench_series.py [--points-per-key 100000] [--repeat 7]

Creates a throwaway database (``bench_series_<name>``), loads the points with COPY, then prints
the median latency per line of ``selectors.metric_series`` (SQL bucketing), of the portable
Python fallback, and of the naive fetch of every point, at full range and at zoomed ranges.
The database is dropped at the end. Target: ≤ 150 ms per line at full range.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings_test")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

KEYS = [
    "normal/accuracy",
    "he/accuracy",
    "normal/entropy",
    "he/entropy",
    "split/he_normal_kl",
    "split/normal_he_kl",
    "actor/pg_loss",
    "actor/grad_norm",
    "actor/clip_frac",
    "perf/tokens_per_s",
]


def create_database() -> str:
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_series_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return old_name


def make_run() -> Any:
    from webapp.models import Project, Run, Team

    team = Team.objects.create(name="Bench", slug="bench")
    project = Project.objects.create(team=team, name="Bench", slug="bench")
    return Run.objects.create(project=project, name="bench", algorithm="policy_split", model_name="tiny-random")


def load_points(run_id: int, per_key: int) -> float:
    """Random walks with rare spikes, COPYed in (PostgreSQL) or bulk-inserted (elsewhere)."""
    from webapp.models import MetricPoint

    rng = random.Random(0)
    started = time.perf_counter()
    rows = []
    for key in KEYS:
        value = 0.0
        for step in range(per_key):
            value += rng.gauss(0, 0.01)
            spike = 25.0 if rng.random() < 1e-4 else 0.0
            rows.append((run_id, key, step, value + spike))
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            with cur.cursor.copy("COPY webapp_metricpoint (run_id, key, step, value) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute("VACUUM ANALYZE webapp_metricpoint")
    else:
        MetricPoint.objects.bulk_create(
            [MetricPoint(run_id=r, key=k, step=s, value=v) for r, k, s, v in rows], batch_size=5000
        )
    return time.perf_counter() - started


def median_ms(fn: Callable[[str], Any], repeat: int) -> tuple[float, Any]:
    """Median over every key and ``repeat`` rounds of fn(key), in ms, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        for key in KEYS:
            t0 = time.perf_counter()
            result = fn(key)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def bucketed(run: Any, lo: int, hi: int) -> Callable[[str], Any]:
    from webapp.selectors import metric_series

    def fn(key: str) -> Any:
        return metric_series(run, key, min_step=lo, max_step=hi)

    return fn


def fallback(run_id: int, lo: int, hi: int, points: int) -> Callable[[str], Any]:
    from webapp.selectors import _raw_points, bucket_min_max

    def fn(key: str) -> Any:
        raw = _raw_points(run_id, key, lo, hi)
        return raw if len(raw) <= points else bucket_min_max(raw, lo=lo, hi=hi, buckets=points // 2)

    return fn


def naive(run_id: int, lo: int, hi: int) -> Callable[[str], Any]:
    from webapp.models import MetricPoint

    def fn(key: str) -> Any:
        qs = MetricPoint.objects.filter(run_id=run_id, key=key, step__gte=lo, step__lte=hi).order_by("step")
        return list(qs.values_list("step", "value"))

    return fn


def endpoint_ms(run: Any, repeat: int) -> float:
    """The whole HTTP round trip of the series endpoint for one chart of 2 lines (test client)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from webapp.models import Membership

    user = get_user_model().objects.create_user("bench", password="bench-password")
    Membership.objects.create(team=run.project.team, user=user, role="admin")
    client = Client()
    client.force_login(user)
    url = f"/runs/{run.pk}/series/?key=normal/accuracy&key=he/accuracy&points=2000"
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert client.get(url).status_code == 200
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points-per-key", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("note: DATABASE_URL is not PostgreSQL; measuring the portable fallback path only", file=sys.stderr)

    setup_test_environment()
    old_name = create_database()
    try:
        run = make_run()
        per_key = args.points_per_key
        load_s = load_points(run.pk, per_key)
        print(
            f"{connection.vendor}: loaded {per_key * len(KEYS):,} points ({len(KEYS)} keys × {per_key:,}) "
            f"in {load_s:.1f} s; median of {args.repeat} rounds × {len(KEYS)} keys, per line\n"
        )
        ranges = [
            ("full range", 0, per_key - 1),
            ("zoom 10%", per_key // 3, per_key // 3 + per_key // 10 - 1),
            ("zoom 1,500 steps", per_key // 2, per_key // 2 + 1499),
        ]
        header = (
            f"{'range':<18}{'points in':>10}{'points out':>18}{'metric_series':>15}{'py fallback':>13}"
            f"{'naive fetch':>13}"
        )
        print(header)
        print("-" * len(header))
        full_ms = 0.0
        for label, lo, hi in ranges:
            sql, series = median_ms(bucketed(run, lo, hi), args.repeat)
            py, _ = median_ms(fallback(run.pk, lo, hi, 2000), args.repeat)
            raw, _ = median_ms(naive(run.pk, lo, hi), args.repeat)
            full_ms = full_ms or sql
            out = f"{len(series.steps):,} ({'bucketed' if series.bucketed else 'raw'})"
            print(f"{label:<18}{series.total:>10,}{out:>18}{sql:>12.1f} ms{py:>10.1f} ms{raw:>10.1f} ms")
        endpoint = endpoint_ms(run, args.repeat * 3)
        print(f"\nseries endpoint, one chart of 2 lines at full range, HTTP via the test client: {endpoint:.1f} ms")
        verdict = "met" if full_ms <= 150 else "NOT met"
        print(f"target ≤ 150 ms per line at full range: {verdict} ({full_ms:.1f} ms)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
