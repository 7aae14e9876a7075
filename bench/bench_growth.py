"""Benchmark: a run's series latency as the point table grows to 50M rows across 5,000 runs.

    DATABASE_URL=postgres://… python bench/bench_growth.py [--rows 50000000] [--runs 5000]

On a throwaway database (``bench_growth_<name>``, dropped at the end). First three probe runs
are loaded: one line of 1,000 points (read raw), one of 100,000 and one of 1,000,000 (read from
the rollups). Then filler runs (10 keys each, ``--rows / --runs`` points per run) are COPYed in,
one COPY per run as a worker would write them (the rollup triggers run on every one), and at each
stage (1M, 10M, 25M, 50M rows by default) the probes are read again: median of ``--repeat``
``metric_series`` calls and of the series endpoint, plus the size of the table and its indexes.
The claim it checks: a probe's latency depends on its own points, not on the table's size.
"""

from __future__ import annotations

import argparse
import io
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
from django.test.utils import setup_test_environment  # noqa: E402

KEY = "normal/accuracy"
PROBES = (1_000, 100_000, 1_000_000)


def create_database() -> str:
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_growth_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return old_name


def copy_text(lines: str) -> None:
    with (
        connection.cursor() as cur,
        cur.cursor.copy("COPY webapp_metricpoint (run_id, key, step, value) FROM STDIN") as c,
    ):
        c.write(lines)


def median_ms(fn: Any, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def table_size() -> float:
    """GiB of the point and rollup tables with their indexes."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_total_relation_size('webapp_metricpoint') + pg_total_relation_size('webapp_metricrollup')"
        )
        (size,) = cur.fetchone()
    return size / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--stages", default="1000000,10000000,25000000,50000000")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench_growth measures the PostgreSQL path: set DATABASE_URL=postgres://…")
    from django.contrib.auth import get_user_model
    from django.test import Client

    from webapp.models import Membership, Project, Run, Team
    from webapp.selectors import metric_series

    setup_test_environment()
    stages = [int(s) for s in args.stages.split(",") if int(s) <= args.rows]
    old_name = create_database()
    try:
        team = Team.objects.create(name="Bench", slug="bench")
        project = Project.objects.create(team=team, name="Bench", slug="bench")
        user = get_user_model().objects.create_user("bench", password="bench-password")
        Membership.objects.create(team=team, user=user, role="admin")
        client = Client()
        client.force_login(user)
        rng = random.Random(0)
        probes = []
        for n in PROBES:
            run = Run.objects.create(project=project, name=f"probe {n}", algorithm="grpo", model_name="tiny-random")
            copy_text("".join(f"{run.pk}\t{KEY}\t{s}\t{rng.random():.6f}\n" for s in range(n)))
            probes.append((n, run))
        loaded = sum(PROBES)
        per_run = max(10, args.rows // args.runs)
        steps = per_run // 10
        fillers = Run.objects.bulk_create(
            [
                Run(project=project, name=f"filler {i}", algorithm="grpo", model_name="tiny-random")
                for i in range(args.runs)
            ],
            batch_size=1000,
        )
        print(
            f"probes: lines of {', '.join(f'{n:,}' for n in PROBES)} points; fillers: {args.runs:,} runs × 10 keys × "
            f"{steps:,} steps, one COPY per run; 1,000 points drawn per line; median of {args.repeat} (ms)\n"
        )
        header = f"{'table rows':>12}{'GiB':>7}{'load rate':>12}" + "".join(
            f"{f'{n:,} pts':>14}{'(http)':>9}" for n in PROBES
        )
        print(header)
        print("-" * len(header))
        filler = 0
        t_load, rows_load = 0.0, 0
        for stage in stages:
            while loaded < stage and filler < len(fillers):
                run = fillers[filler]
                filler += 1
                buf = io.StringIO()
                for k in range(10):
                    key = f"filler/key_{k}"
                    buf.write("".join(f"{run.pk}\t{key}\t{s}\t{(s * 7 + k) % 101 / 100}\n" for s in range(steps)))
                t0 = time.perf_counter()
                copy_text(buf.getvalue())
                t_load += time.perf_counter() - t0
                rows_load += 10 * steps
                loaded += 10 * steps
            with connection.cursor() as cur:
                cur.execute("ANALYZE webapp_metricpoint")
                cur.execute("ANALYZE webapp_metricrollup")
            gib = table_size()
            cells = []
            for _, run in probes:
                ms = median_ms(lambda run=run: metric_series(run, KEY, max_points=1000), args.repeat)
                url = f"/runs/{run.pk}/series/?key={KEY}&points=1000"
                http = median_ms(lambda url=url: client.get(url), args.repeat)
                cells.append(f"{ms:>14.1f}{http:>9.1f}")
            load_rate = f"{rows_load / t_load:,.0f}/s" if t_load else "-"
            print(f"{loaded:>12,}{gib:>7.1f}{load_rate:>12}" + "".join(cells), flush=True)
        print("\nload rate: COPY into the table with its index and rollup triggers, per stage's filler runs")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
