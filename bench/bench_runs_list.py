"""Benchmark: the runs list and the run pickers of a project with 10,000 runs, next to MLflow.

    DATABASE_URL=postgres://… python bench/bench_runs_list.py [--runs 10000] [--repeat 15]

Creates a throwaway database (``bench_runs_<name>``), fills it (every run with its full config and
20 metric keys in its summary), then requests through the Django test client the list page with
several filter/sort combinations, the side-by-side and compare pages (their run pickers) and the
picker search, printing the median latency, the page size and the number of SQL queries of each
(also at --small runs, to show the query count does not grow). Next to it in the same run:
MLflow's ``search_runs`` (first page of 50, newest first; and a search by name) over as many runs
with 20 latest metrics and 30 params each, in its own schema on the same cluster. The plan of the
default order's query is printed with --explain. Target: ≤ 200 ms per list page at 10,000 runs.
"""

from __future__ import annotations

import argparse
import dataclasses
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

METRIC_KEYS = [
    "normal/accuracy",
    "he/accuracy",
    "normal/entropy",
    "he/entropy",
    "normal/length",
    "he/length",
    "normal/logprob",
    "he/logprob",
    "split/he_normal_kl",
    "split/normal_he_kl",
    "split/clamp_frac",
    "split/bonus_abs_mean",
    "actor/pg_loss",
    "actor/clip_frac",
    "actor/grad_norm",
    "actor/entropy",
    "train/reward",
    "train/reward_std",
    "timing/step_s",
    "perf/tokens_per_s",
]

QUERIES = [
    ("default (newest first)", ""),
    ("sort by he/accuracy ↓", "sort=-m.he/accuracy"),
    ("sort by κ ↑, page 10", "sort=cfg.kappa&page=10"),
    ("status + η filter", "status=succeeded&cfg.eta=0.03"),
    ("tag + name search", "tag=baseline&q=run+1"),
    (
        "12 chosen columns",
        "cols=name,status,algorithm,cfg.eta,cfg.kappa,cfg.alpha,m.train/reward,"
        "m.normal/accuracy,m.he/accuracy,m.split/he_normal_kl,m.actor/grad_norm,created",
    ),
]


def create_database() -> str:
    old_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_runs_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    return old_name


def default_config() -> dict[str, Any]:
    from trainer.config import TrainConfig

    return {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(TrainConfig)
    }


def populate(runs: int, *, slug: str) -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    from webapp.models import Membership, Project, Run, RunStatus, Tag, Team

    rng = random.Random(0)
    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    project = Project.objects.create(team=team, name=slug, slug=slug)
    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_user("bench", password="bench-password")
        Membership.objects.create(team=team, user=user, role="admin")
    tags = [Tag.objects.create(project=project, name=n) for n in ("baseline", "ablation", "paper", "sweep", "bug")]
    base = default_config()
    statuses = [s.value for s in RunStatus]
    objs = []
    for i in range(runs):
        config = {
            **base,
            "eta": rng.choice([0.01, 0.03, 0.06, 0.1]),
            "kappa": rng.choice([1.0, 2.0, 4.0]),
            "alpha": rng.choice([0.0, 0.5, 1.0]),
            "seed": i % 5,
        }
        summary = {k: rng.random() for k in METRIC_KEYS if rng.random() > 0.05}  # a few keys missing
        objs.append(
            Run(
                project=project,
                name=f"run {i}",
                config=config,
                algorithm="policy_split",
                model_name="tiny-random",
                seed=i % 5,
                status=rng.choice(statuses),
                step=rng.randint(0, 100),
                total_steps=100,
                summary=summary,
                created_by=user,
            )
        )
    created = Run.objects.bulk_create(objs, batch_size=500)
    through = Run.tags.through
    through.objects.bulk_create(
        [through(run_id=r.pk, tag_id=t.pk) for r in created for t in rng.sample(tags, rng.randint(0, 2))],
        batch_size=1000,
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    return project, user


def measure(client: Any, url: str, repeat: int) -> tuple[float, int, int, int]:
    client.get(url)  # warm-up (template compilation, connection)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    rows = len(response.context["rows"]) if response.context and "rows" in response.context else 0
    return statistics.median(times), len(ctx.captured_queries), rows, len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()

    from django.test import Client
    from django.urls import reverse

    from webapp.models import Run

    setup_test_environment()
    theirs: dict[str, float] = {}
    if not args.no_mlflow:
        with mlflow_database(connection, "runs") as db:
            theirs = mlflow("runs", db, runs=args.runs, repeat=args.repeat)
    old_name = create_database()
    try:
        small_project, _ = populate(args.small, slug="small")
        project, user = populate(args.runs - args.small, slug="bench")
        client = Client()
        client.force_login(user)
        print(
            f"{connection.vendor}: {args.runs - args.small:,} runs (and a project of {args.small}) × "
            f"{len(METRIC_KEYS)} metric keys; median of {args.repeat} requests (test client, full page render)\n"
        )
        header = f"{'page':<34}{'rows':>6}{'median':>12}{'KB':>8}{'queries':>9}{'at ' + str(args.small) + ' runs':>14}"
        print(header)
        print("-" * len(header))
        worst = 0.0
        for label, query in QUERIES:
            ms, queries, rows, size = measure(
                client, reverse("webapp-run-list", args=[project.pk]) + "?" + query, args.repeat
            )
            _, few, _, _ = measure(client, reverse("webapp-run-list", args=[small_project.pk]) + "?" + query, 1)
            worst = max(worst, ms)
            print(f"{label:<34}{rows:>6}{ms:>9.1f} ms{size / 1024:>8.0f}{queries:>9}{few:>14}")
        for label, name, query in (
            ("side by side (run picker)", "webapp-side-by-side", ""),
            ("compare 2 runs (run picker)", "webapp-compare", "?runs={a},{b}"),
            ("picker search ?q=run 12", "webapp-run-search", "?q=run+12"),
        ):
            urls = []
            for p in (project, small_project):
                a, b = Run.objects.filter(project=p).order_by("id").values_list("id", flat=True)[:2]
                urls.append(reverse(name, args=[a if name == "webapp-side-by-side" else p.pk]) + query.format(a=a, b=b))
            ms, queries, _, size = measure(client, urls[0], args.repeat)
            _, few, _, _ = measure(client, urls[1], 1)
            print(f"{label:<34}{'':>6}{ms:>9.1f} ms{size / 1024:>8.0f}{queries:>9}{few:>14}")
        if theirs:
            first_ms, search_ms = theirs["first_page_ms"], theirs["search_ms"]
            print(
                f"\nMLflow search_runs at {args.runs:,} runs: first page of 50 (newest first) {first_ms:.1f} ms, ",
                end="",
            )
            print(f"search by name {search_ms:.1f} ms")
            default_ms = measure(client, reverse("webapp-run-list", args=[project.pk]), args.repeat)[0]
            print(f"runs list page (whole HTML) / MLflow search_runs (data only): {ratio(default_ms, first_ms)}")
        print(f"\ntarget ≤ 200 ms per list page: {'met' if worst <= 200 else 'NOT met'} (slowest {worst:.1f} ms)")
        if args.explain:
            from django.http import QueryDict

            from webapp.forms import RunListForm
            from webapp.selectors import runs_for_list

            form = RunListForm(QueryDict(""))
            qs = runs_for_list(project, filters=form.filters(), sort=form.sort_value())[:50]
            sql, params = qs.query.sql_with_params()
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
                print("\n=== EXPLAIN: the runs list's default page ===\n" + "\n".join(r[0] for r in cur.fetchall()))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
