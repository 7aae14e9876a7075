"""Selectors: the runs list query and min/max-preserving down-sampling of metric series.

The series tests run the database path of whatever backend the suite uses (PostgreSQL in CI)
and the portable Python fallback directly, and check that both agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from webapp import selectors
from webapp.models import Run, Tag
from webapp.selectors import RunFilters, bucket_min_max, metric_series, metric_series_many, runs_for_list
from webapp.worker import ingest

pytestmark = pytest.mark.django_db


def add_points(run: Run, key: str, values: list[float], *, start: int = 0, every: int = 1) -> None:
    ingest.metrics_record([(run.pk, key, start + i * every, v) for i, v in enumerate(values)])


def spiky(n: int) -> list[float]:
    values = [0.5 + 0.01 * (i % 7) for i in range(n)]
    values[n // 3] = 50.0  # one spike up
    values[2 * n // 3] = -50.0  # one spike down
    return values


def test_it_returns_small_ranges_raw(make_run: Callable[..., Any]) -> None:
    run = make_run()
    add_points(run, "k", [3.0, 1.0, 2.0], start=10)
    series = metric_series(run, "k", max_points=10)
    assert (series.steps, series.values) == ([10, 11, 12], [3.0, 1.0, 2.0])
    assert (series.bucketed, series.total) == (False, 3)


def test_it_returns_an_empty_series_for_an_unknown_key(make_run: Callable[..., Any]) -> None:
    series = metric_series(make_run(), "nope")
    assert series.steps == [] and series.total == 0


def test_it_keeps_spikes_when_bucketing(make_run: Callable[..., Any]) -> None:
    run = make_run()
    add_points(run, "k", spiky(10_000))
    series = metric_series(run, "k", max_points=200)
    assert series.bucketed and series.total == 10_000
    assert len(series.steps) <= 200
    assert 50.0 in series.values and -50.0 in series.values
    assert series.steps == sorted(series.steps)
    assert series.steps[series.values.index(50.0)] == 10_000 // 3


def test_it_rebuckets_a_zoomed_range_at_finer_resolution(make_run: Callable[..., Any]) -> None:
    run = make_run()
    add_points(run, "k", spiky(10_000))
    zoomed = metric_series(run, "k", min_step=3000, max_step=4000, max_points=200)
    assert zoomed.bucketed and zoomed.total == 1001
    assert min(zoomed.steps) >= 3000 and max(zoomed.steps) <= 4000 and len(zoomed.steps) <= 200
    assert 50.0 in zoomed.values
    narrow = metric_series(run, "k", min_step=3300, max_step=3400, max_points=200)
    assert not narrow.bucketed and narrow.steps == list(range(3300, 3401))


def test_it_counts_points_not_steps_for_sparse_series(make_run: Callable[..., Any]) -> None:
    run = make_run()
    add_points(run, "eval", [float(i) for i in range(150)], every=100)  # 150 points over 15,000 steps
    series = metric_series(run, "eval", max_points=200)
    assert not series.bucketed and len(series.steps) == 150


def test_the_fallback_keeps_each_buckets_min_and_max() -> None:
    points = [(0, 1.0), (1, 5.0), (2, 3.0), (3, -2.0), (4, 4.0), (5, 4.0), (6, 0.0), (7, 9.0)]
    # 2 buckets over steps 0–7: [0, 3] and [4, 7]
    assert bucket_min_max(points, lo=0, hi=7, buckets=2) == [(1, 5.0), (3, -2.0), (6, 0.0), (7, 9.0)]


def test_the_fallback_keeps_a_single_point_once() -> None:
    assert bucket_min_max([(0, 1.0), (10, 2.0)], lo=0, hi=10, buckets=5) == [(0, 1.0), (10, 2.0)]


def test_the_fallback_never_exceeds_two_points_per_bucket() -> None:
    rng = random.Random(0)
    points = [(s, rng.gauss(0, 1)) for s in range(5000)]
    out = bucket_min_max(points, lo=0, hi=4999, buckets=100)
    assert len(out) <= 200
    assert max(v for _, v in points) in {v for _, v in out}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL bucketing path is PostgreSQL only")
def test_the_postgresql_path_agrees_with_the_fallback(make_run: Callable[..., Any]) -> None:
    run = make_run()
    rng = random.Random(1)
    values = [round(rng.gauss(0, 1), 3) for _ in range(7919)]  # rounding makes ties, which must break alike
    add_points(run, "k", values, start=17)
    points = [(17 + i, v) for i, v in enumerate(values)]
    for lo, hi, buckets in [(17, 17 + 7918, 500), (1000, 2500, 37), (17, 17 + 7918, 1)]:
        window = [p for p in points if lo <= p[0] <= hi]
        bucketed, total = selectors._pg_bucketed(run.pk, "k", lo, hi, buckets)
        assert bucketed == bucket_min_max(window, lo=lo, hi=hi, buckets=buckets)
        assert total == len(window)


def test_a_planted_spike_and_dip_survive_every_zoom_level(make_run: Callable[..., Any]) -> None:
    run = make_run()
    n = 120_000  # zooms from the whole line down to raw points go through rollup levels 1…4
    values = [0.5 + 0.01 * (i % 7) for i in range(n)]
    spike, dip = 53_457, 94_567
    values[spike], values[dip] = 1e6, -1e6
    add_points(run, "k", values)
    windows = [(None, None), (0, n - 1), (40_000, 100_000), (50_000, 60_000), (53_000, 54_000)]
    windows += [(spike - 300, spike + 300), (spike - 10, spike + 10), (80_001, 119_998), (94_000, 95_003)]
    for lo, hi in windows:
        series = metric_series(run, "k", min_step=lo, max_step=hi, max_points=500)
        first, last = lo or 0, n - 1 if hi is None else hi
        assert series.total == last - first + 1, (lo, hi)
        assert len(series.steps) <= 500 and series.steps == sorted(series.steps)
        assert first <= series.steps[0] and series.steps[-1] <= last
        assert all(values[s] == v for s, v in zip(series.steps, series.values, strict=True)), (lo, hi)
        for planted in (spike, dip):
            if first <= planted <= last:
                assert planted in series.steps, (lo, hi, planted)
    whole = metric_series_many([run], ["k"], max_points=500)[(run.pk, "k")]
    assert whole.bucketed and whole.total == n and len(whole.steps) <= 500
    assert {spike, dip} <= set(whole.steps)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the rollups are PostgreSQL only")
def test_a_zoom_rebuckets_only_the_visible_range(make_run: Callable[..., Any]) -> None:
    run = make_run()
    add_points(run, "k", [float(i % 11) for i in range(100_000)])
    zoomed = metric_series(run, "k", min_step=40_000, max_step=40_999, max_points=100)
    assert zoomed.bucketed and zoomed.total == 1000
    # 1,000 steps in ~48 buckets: about one point per 21 steps of the range, none outside it.
    assert min(zoomed.steps) >= 40_000 and max(zoomed.steps) <= 40_999 and len(zoomed.steps) >= 80


def test_many_lines_are_read_in_a_constant_number_of_queries(
    make_run: Callable[..., Any], django_assert_num_queries: Any
) -> None:
    runs = [make_run() for _ in range(6)]
    for i, run in enumerate(runs):
        add_points(run, "long", spiky(3000 + i))
        add_points(run, "short", [1.0, 2.0, 3.0])
    expected = 3 if connection.vendor == "postgresql" else None
    if expected is None:
        pytest.skip("the constant-query path is PostgreSQL's")
    with django_assert_num_queries(expected):
        lines = metric_series_many(runs, ["long", "short", "never-logged"], max_points=200)
    with django_assert_num_queries(expected):
        metric_series_many(runs[:2], ["long", "short"], max_points=200)
    assert set(lines) == {(r.pk, k) for r in runs for k in ("long", "short")}
    for run in runs:
        long, short = lines[(run.pk, "long")], lines[(run.pk, "short")]
        assert long.bucketed and len(long.steps) <= 200 and {50.0, -50.0} <= set(long.values)
        assert long.total == metric_series(run, "long", max_points=200).total
        assert (short.steps, short.values, short.bucketed) == ([0, 1, 2], [1.0, 2.0, 3.0], False)


def test_it_filters_and_sorts_the_runs_list(project: Any, make_run: Callable[..., Any]) -> None:
    a = make_run(name="a", eta=0.1)
    b = make_run(name="b", eta=0.03)
    c = make_run(name="c", eta=0.1, algorithm="grpo")
    Run.objects.filter(pk=a.pk).update(summary={"he/accuracy": 0.2})
    Run.objects.filter(pk=c.pk).update(summary={"he/accuracy": 0.9})
    b.tags.add(Tag.objects.create(project=project, name="x"))
    by_metric = runs_for_list(project, filters=RunFilters(), sort="-m.he/accuracy")
    assert [r.name for r in by_metric] == ["c", "a", "b"]
    eta = runs_for_list(project, filters=RunFilters(config={"eta": [0.1]}), sort="name")
    assert [r.name for r in eta] == ["a", "c"]
    assert [r.name for r in runs_for_list(project, filters=RunFilters(tag="x"), sort="name")] == ["b"]


def test_it_refuses_an_unknown_config_field_in_a_filter(project: Any) -> None:
    with pytest.raises(ValueError, match="unknown config field"):
        list(runs_for_list(project, filters=RunFilters(config={"eta__gt": [0]}), sort="name"))
