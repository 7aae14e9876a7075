"""Benchmark: the runs list page of a project with 1,000 runs × 20 metric keys in their summaries.

    DATABASE_URL=postgres://… python bench/bench_runs_list.py [--runs 1000] [--repeat 15]

Creates a throwaway database (``bench_runs_<name>``), fills it, then requests the list page
through the Django test client with several filter/sort combinations and prints the median
latency and the number of SQL queries of each. The database is dropped at the end.
Target: ≤ 200 ms per page; the query count must not depend on the number of runs.
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


def populate(runs: int) -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    from webapp.models import Membership, Project, Run, RunStatus, Tag, Team

    rng = random.Random(0)
    team = Team.objects.create(name="Bench", slug="bench")
    project = Project.objects.create(team=team, name="Bench", slug="bench")
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


def measure(client: Any, url: str, repeat: int) -> tuple[float, int, int]:
    client.get(url)  # warm-up (template compilation, connection)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    return statistics.median(times), len(ctx.captured_queries), len(response.context["rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    from django.test import Client
    from django.urls import reverse

    setup_test_environment()
    old_name = create_database()
    try:
        project, user = populate(args.runs)
        client = Client()
        client.force_login(user)
        base = reverse("webapp-run-list", args=[project.pk])
        print(
            f"{connection.vendor}: {args.runs:,} runs × {len(METRIC_KEYS)} metric keys; "
            f"median of {args.repeat} requests (test client, full page render)\n"
        )
        header = f"{'page':<26}{'rows':>6}{'median':>12}{'queries':>9}"
        print(header)
        print("-" * len(header))
        worst = 0.0
        for label, query in QUERIES:
            ms, queries, rows = measure(client, f"{base}?{query}", args.repeat)
            worst = max(worst, ms)
            print(f"{label:<26}{rows:>6}{ms:>9.1f} ms{queries:>9}")
        print(f"\ntarget ≤ 200 ms per page: {'met' if worst <= 200 else 'NOT met'} (slowest {worst:.1f} ms)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
