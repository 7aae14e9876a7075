"""Reads for the runs, compare and studies pages: the filtered, sorted runs list, down-sampled
metric series, the runs and series of a comparison, the studies with their run counts.

Everything here is a plain function that takes domain objects and returns query sets or plain
data; views never build queries themselves.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, F, FloatField, Max, Min, Q, QuerySet, Window
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Lower, RowNumber
from django.utils import timezone

from trainer.config import FIELD_SYMBOLS, TrainConfig
from webapp.models import (
    ACTIVE_STATUSES,
    ROLLUP_FANOUT,
    ROLLUP_LEVELS,
    UNTRUSTED_STATUSES,
    Dataset,
    MetricPoint,
    MetricRollup,
    Project,
    Run,
    RunLog,
    RunStatus,
    Study,
)
from webapp.worker.run_output import levels_from

CONFIG_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainConfig)}
NUMERIC_TYPES = ("int", "float")

ALGORITHM_LABELS = {
    "policy_split": "Policy Split",
    "grpo": "GRPO",
    "forking_tokens": "Forking tokens only",
    "clip_cov": "Clip-Cov",
    "kl_cov": "KL-Cov",
    "eda": "Entropy-driven advantage",
    "entropy_reg": "Entropy regularisation",
    "entropy_adv": "Entropy advantage",
}

# Sortable plain columns: column id -> model field.
PLAIN_SORTS = {
    "name": "name",
    "status": "status",
    "algorithm": "algorithm",
    "model": "model_name",
    "seed": "seed",
    "created": "created_at",
    "step": "step",
    "queue": "queue",
    "priority": "priority",
    "creator": "created_by__username",
    "id": "id",
}
NOT_NULL_SORTS = {"name", "status", "algorithm", "model", "seed", "step", "queue", "priority", "id"}
BASE_COLUMNS = ["name", "status", "algorithm", "model", "seed", "created", "queue", "priority", "creator", "step"]
DEFAULT_COLUMNS = [
    "name",
    "status",
    "algorithm",
    "model",
    "cfg.eta",
    "seed",
    "created",
    "m.normal/accuracy",
    "m.he/accuracy",
    "m.split/he_normal_kl",
]


@dataclass(frozen=True)
class RunFilters:
    status: str = ""
    tag: str = ""
    algorithm: str = ""
    q: str = ""
    # Config field -> accepted values (already converted to the field's type); any value matches.
    config: dict[str, list[Any]] = field(default_factory=dict)


def field_kind(name: str) -> str:
    """The Python type name of a TrainConfig field ("float", "int", "bool", "str", "dict")."""
    f = CONFIG_FIELDS[name]
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def queued_runs(pool: str) -> QuerySet[Run]:
    """The queued runs of ``pool`` in the order they start: the one home of that order.

    Priority first (high, normal, low: trainer.choices.PRIORITIES), then the queue rank (the order
    they were queued in, unless someone moved them), then id. Workers claim by it
    (``webapp.worker.execution.claim_next``) and the queue page and run page show it.
    """
    return Run.objects.filter(status=RunStatus.QUEUED, queue=pool).order_by("priority", "queue_rank", "id")


def runs_for_list(project: Project, *, filters: RunFilters, sort: str = "-created") -> QuerySet[Run]:
    """The project's runs for the list page: filtered, sorted, tags prefetched (constant query count)."""
    qs: QuerySet[Run] = Run.objects.filter(project=project)
    qs = qs.select_related("created_by").prefetch_related("tags")
    qs = _apply_filters(qs, filters)
    return qs.order_by(*sort_order(sort))


def runs_search(project: Project, text: str, *, limit: int = 20, exclude: Sequence[int] = ()) -> list[Run]:
    """Run pickers: the newest runs whose name contains ``text`` (or whose id it is), at most ``limit``.

    Read in the order of the run_project_created index, so the scan stops at the ``limit``-th
    match instead of reading every run of the project.
    """
    qs = Run.objects.filter(project=project).exclude(pk__in=list(exclude))
    text = text.strip()
    if text:
        by_name = Q(name__icontains=text)
        qs = qs.filter(by_name | Q(pk=int(text)) if text.isdigit() and len(text) < 19 else by_name)
    qs = qs.only("id", "name", "status", "algorithm", "seed", "created_at", "project_id")
    return list(qs.order_by("-created_at", "-id")[:limit])


def _apply_filters(qs: QuerySet[Run], filters: RunFilters) -> QuerySet[Run]:
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.algorithm:
        qs = qs.filter(algorithm=filters.algorithm)
    if filters.tag:
        qs = qs.filter(tags__name=filters.tag)
    if filters.q:
        qs = qs.filter(name__icontains=filters.q)
    for name, values in filters.config.items():
        if name not in CONFIG_FIELDS:  # the form validates names; this guards the lookup itself
            raise ValueError(f"unknown config field {name!r}")
        cond = Q()
        for value in values:
            cond |= Q(**{f"config__{name}": value})
        qs = qs.filter(cond)
    return qs


def sort_order(sort: str) -> list[Any]:
    """ORDER BY terms for a column id: plain fields, ``cfg.<field>`` or ``m.<metric key>``; nulls last."""
    descending = sort.startswith("-")
    column = sort.lstrip("-")
    expr = sort_expression(column)
    if expr is None or column == "created":
        # Exactly the order of the run_project_created index (created_at is never null, so no
        # NULLS LAST, which would keep PostgreSQL from reading the page straight off the index).
        return ["-created_at", "-id"] if descending or expr is None else ["created_at", "id"]
    if column in NOT_NULL_SORTS:
        return [expr.desc() if descending else expr.asc(), "-id"]
    term = expr.desc(nulls_last=True) if descending else expr.asc(nulls_last=True)
    return [term, "-id"]


def sort_expression(column: str) -> Any:
    if column in PLAIN_SORTS:
        name = PLAIN_SORTS[column]
        return Lower(name) if name in ("name", "model_name", "created_by__username") else F(name)
    if column.startswith("m.") and len(column) > 2:
        # Run.summary holds floats only (ingestion drops non-finite values), so the cast is safe.
        return Cast(KeyTextTransform(column[2:], "summary"), FloatField())
    if column.startswith("cfg.") and column[4:] in CONFIG_FIELDS:
        name = column[4:]
        if field_kind(name) in NUMERIC_TYPES:
            return Cast(KeyTextTransform(name, "config"), FloatField())
        return KeyTransform(name, "config")
    return None


def is_column(column: str) -> bool:
    if column in BASE_COLUMNS:
        return True
    if column.startswith("cfg."):
        return column[4:] in CONFIG_FIELDS
    return column.startswith("m.") and 2 < len(column) <= 82


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    kind: str  # name | status | text | num | date | step
    title: str = ""  # tooltip, e.g. the metric's description


COLUMN_LABELS = {
    "name": "Name",
    "status": "Status",
    "algorithm": "Algorithm",
    "model": "Model",
    "seed": "Seed",
    "created": "Created",
    "queue": "Queue",
    "priority": "Priority",
    "creator": "By",
    "step": "Step",
    **{f"cfg.{name}": symbol for name, symbol in FIELD_SYMBOLS.items()},
}
# Priority sorts by its index in PRIORITIES (ascending: high first, the order a pool serves them in).
COLUMN_KINDS = {
    "name": "name",
    "status": "status",
    "seed": "num",
    "created": "date",
    "step": "step",
    "priority": "priority",
}


def column(column_id: str) -> Column:
    label = COLUMN_LABELS.get(column_id)
    if column_id.startswith("m."):
        return Column(column_id, label or column_id[2:], "num", metric_help(column_id[2:]))
    if column_id.startswith("cfg."):
        name = column_id[4:]
        kind = "num" if field_kind(name) in NUMERIC_TYPES else "text"
        return Column(column_id, label or name, kind, TrainConfig.field_help().get(name, ""))
    return Column(column_id, label or column_id, COLUMN_KINDS.get(column_id, "text"))


def metric_help(key: str) -> str:
    from trainer.metrics import METRICS

    generic = key.replace("normal/", "{mode}/", 1).replace("he/", "{mode}/", 1)
    return METRICS.get(key) or METRICS.get(generic, "")


def cell_value(run: Run, column_id: str) -> Any:
    """The raw value a column shows for a run (formatting is the template's job)."""
    if column_id.startswith("m."):
        return run.summary.get(column_id[2:])
    if column_id.startswith("cfg."):
        return run.config.get(column_id[4:])
    simple = {
        "algorithm": ALGORITHM_LABELS.get(run.algorithm, run.algorithm),
        "model": run.model_name,
        "seed": run.seed,
        "created": run.created_at,
        "queue": run.queue,
        "priority": run.priority_name,
        "step": run.step,
        "creator": run.created_by.username if run.created_by else "",
    }
    return simple.get(column_id)


def display(value: Any) -> Any:
    """A cell value as shown: floats to 4 significant digits, booleans as words, dates untouched."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def team_datasets(*, team_id: int) -> QuerySet[Dataset]:
    """A team's uploaded datasets by name, without their rows (the listing never needs them)."""
    return Dataset.objects.filter(team_id=team_id).defer("content").select_related("created_by")


def dataset_references(*, team_id: int) -> list[str]:
    """The task names of a team's uploaded datasets (``data:<name>.jsonl``), by name."""
    return [d.reference for d in Dataset.objects.filter(team_id=team_id).only("name").order_by("name")]


def project_tags(project: Project) -> list[str]:
    return list(project.tags.order_by("name").values_list("name", flat=True))


def run_logs(run: Run, *, level: str = "debug", attempt: int | None = None) -> QuerySet[RunLog]:
    """A run's log lines at ``level`` or more severe (trainer.choices.LOG_LEVELS), oldest first:
    the trainer's log events and its captured stdout/stderr, attempt by attempt, in the order they
    were stored. The one read of the log storage (the run page, its download, the API)."""
    qs = run.logs.filter(level__in=levels_from(level))
    if attempt is not None:
        qs = qs.filter(attempt=attempt)
    return qs.order_by("attempt", "id")


def dropped_output_lines(run: Run) -> dict[int, int]:
    """Per attempt, how many of its first output lines the rotating window dropped (the lowest seq kept)."""
    rows = run.logs.filter(source="output").values("attempt").annotate(first=Min("seq"))
    return {row["attempt"]: row["first"] for row in rows if row["first"]}


def recent_logs(run: Run, *, limit: int = 200, level: str = "debug") -> list[RunLog]:
    """The newest ``limit`` lines of :func:`run_logs`, oldest first (the page shows the newest at the bottom)."""
    rows = list(run_logs(run, level=level).reverse()[:limit])
    rows.reverse()
    return rows


def last_log_id(run: Run) -> int:
    return run.logs.order_by("-id").values_list("id", flat=True).first() or 0


def new_points(run: Run, keys: Sequence[str], *, after_step: int, limit: int) -> list[tuple[str, int, float]]:
    """Points of ``keys`` with step > after_step, at most ``limit`` (the caller refetches when capped)."""
    qs = MetricPoint.objects.filter(run=run, key__in=list(keys), step__gt=after_step).order_by("key", "step")
    return list(qs.values_list("key", "step", "value")[:limit])


# --- metric series down-sampling ------------------------------------------------------------------

Point = tuple[int, float]


@dataclass(frozen=True)
class Series:
    key: str
    steps: list[int]
    values: list[float]
    bucketed: bool
    total: int  # points in the requested range before down-sampling

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "values": self.values, "bucketed": self.bucketed, "total": self.total}


MAX_SERIES_POINTS = 10_000
"""The most points one line may be asked for (the run page's series endpoint and the API)."""


def metric_series(
    run: Run, key: str, *, min_step: int | None = None, max_step: int | None = None, max_points: int = 2000
) -> Series:
    """One metric line with at most ``max_points`` points over [min_step, max_step].

    Small ranges come back raw. Larger ones are cut into about ``max_points // 2`` step buckets and
    each bucket contributes its min-value and max-value points, so spikes and dips survive however
    far the chart is zoomed out. Zooming in asks again with a narrower range, which re-buckets only
    that range (or returns its raw points). On PostgreSQL the buckets come from the rollups that
    ingestion maintains (``MetricRollup``): the cost depends on the points drawn, not on the
    line's length; elsewhere the raw points are bucketed.
    """
    max_points = max(2, max_points)
    if connection.vendor == "postgresql" and min_step is None and max_step is None:
        line = _pg_lines([run.pk], [key]).get((run.pk, key))
        if line is None:
            return Series(key, [], [], False, 0)
        n, lo, hi = line
        if n <= max_points:
            return _raw_series(run.pk, key, lo, hi)
    else:
        first, last = _step_bounds(run.pk, key, min_step, max_step)
        if first is None or last is None:
            return Series(key, [], [], False, 0)
        lo, hi = first, last
    if hi - lo + 1 <= max_points:  # steps are unique per key, so this range cannot hold more points
        return _raw_series(run.pk, key, lo, hi)
    if connection.vendor == "postgresql":
        points, total = _pg_envelope(run.pk, key, lo, hi, max_points)
    else:
        raw = _raw_points(run.pk, key, lo, hi)
        if len(raw) <= max_points:
            return Series(key, [s for s, _ in raw], [v for _, v in raw], False, len(raw))
        points, total = bucket_min_max(raw, lo=lo, hi=hi, buckets=max_points // 2), len(raw)
    if total <= max_points:  # a sparse line (e.g. evaluated every 100 steps): every point fits
        return _raw_series(run.pk, key, lo, hi)
    return Series(key, [s for s, _ in points], [v for _, v in points], True, total)


def metric_series_many(
    runs: Sequence[Run], keys: Sequence[str], *, max_points: int = 2000
) -> dict[tuple[int, str], Series]:
    """Every (run, key) line over its whole range, in at most three queries however many there are.

    One query reads each line's size and step range (level 0 of the rollups), one the raw points
    of the lines that fit, one the rollup buckets of the long ones. Lines never logged are absent.
    """
    max_points = max(2, max_points)
    if connection.vendor != "postgresql" or not runs or not keys:
        found = {(r.pk, k): metric_series(r, k, max_points=max_points) for r in runs for k in keys}
        return {pair: series for pair, series in found.items() if series.total}
    lines = _pg_lines([r.pk for r in runs], keys)
    small = [(run_id, key) for (run_id, key), (n, _, _) in lines.items() if n <= max_points]
    large = {pair: line for pair, line in lines.items() if line[0] > max_points}
    out = _pg_raw_many(small)
    out.update(_pg_envelope_many(large, max_points))
    return out


def _pg_lines(run_ids: Sequence[int], keys: Sequence[str]) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(run, key) -> (points, first step, last step) of each line, from level 0 of the rollups."""
    rows = MetricRollup.objects.filter(run_id__in=list(run_ids), key__in=list(keys), level=0)
    return {(r, k): (n, lo, hi) for r, k, n, lo, hi in rows.values_list("run_id", "key", "n", "min_step", "max_step")}


def _rollup_level(span: int, buckets: int) -> int:
    """The coarsest rollup level whose buckets are no wider than the ones drawn (0: none fits)."""
    level = 0
    while level < ROLLUP_LEVELS and ROLLUP_FANOUT ** (level + 1) * buckets <= span:
        level += 1
    return level


def _envelope_points(rows: Iterable[tuple[Any, Any, Any]]) -> tuple[list[Point], int]:
    """Points of (lowest [value, step], highest [value, -step], count) rows, and the points they cover."""
    points: set[Point] = set()
    total = 0
    for low, high, n in rows:
        if not n:
            continue
        points.add((int(low[1]), float(low[0])))
        points.add((int(-high[1]), float(high[0])))
        total += int(n)
    return sorted(points), total


def _pg_envelope(run_id: int, key: str, lo: int, hi: int, max_points: int) -> tuple[list[Point], int]:
    """Min/max points of [lo, hi] from the rollup buckets inside it, plus the raw points of the partial
    buckets at either end (fewer than one drawn bucket's worth each)."""
    buckets = max(1, max_points // 2 - 2)  # two more for the raw ends
    level = _rollup_level(hi - lo + 1, buckets)
    width = ROLLUP_FANOUT**level
    first, last = -(-lo // width), (hi + 1) // width - 1  # the buckets wholly inside [lo, hi]
    if level == 0 or last < first:
        return _pg_bucketed(run_id, key, lo, hi, max_points // 2)
    full = last - first + 1
    envelope = "min(ARRAY[value, step::float8]), max(ARRAY[value, -step::float8]), count(*)"
    points = MetricPoint._meta.db_table
    sql = f"""
        SELECT min(ARRAY[lo_value, lo_step::float8]), max(ARRAY[hi_value, -hi_step::float8]), sum(n)
        FROM {MetricRollup._meta.db_table}
        WHERE run_id = %s AND key = %s AND level = %s AND bucket BETWEEN %s AND %s
        GROUP BY ((bucket - %s)::bigint * %s) / %s
        UNION ALL
        SELECT {envelope} FROM {points} WHERE run_id = %s AND key = %s AND step >= %s AND step < %s
        UNION ALL
        SELECT {envelope} FROM {points} WHERE run_id = %s AND key = %s AND step > %s AND step <= %s
    """
    params = [run_id, key, level, first, last, first, buckets, full]
    params += [run_id, key, lo, first * width, run_id, key, (last + 1) * width - 1, hi]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return _envelope_points(cur.fetchall())


def _values(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
    """A typed VALUES list and its parameters (one row per series)."""
    row = "(" + ", ".join(f"%s::{t}" for t in types) + ")"
    return ", ".join([row] * len(rows)), [x for r in rows for x in r]


def _pg_raw_many(pairs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Series]:
    if not pairs:
        return {}
    values, params = _values(pairs, ["bigint", "varchar"])
    sql = f"""
        SELECT p.run_id, p.key, p.step, p.value
        FROM (VALUES {values}) AS v(run_id, key)
        JOIN {MetricPoint._meta.db_table} p ON p.run_id = v.run_id AND p.key = v.key
        ORDER BY p.run_id, p.key, p.step
    """
    lines: dict[tuple[int, str], tuple[list[int], list[float]]] = {}
    with connection.cursor() as cur:
        cur.execute(sql, params)
        for run_id, key, step, value in cur.fetchall():
            steps, vals = lines.setdefault((run_id, key), ([], []))
            steps.append(step)
            vals.append(value)
    return {(r, k): Series(k, steps, vals, False, len(steps)) for (r, k), (steps, vals) in lines.items()}


def _pg_envelope_many(
    lines: dict[tuple[int, str], tuple[int, int, int]], max_points: int
) -> dict[tuple[int, str], Series]:
    """Whole-range envelopes of long lines from their rollups in one query (a line's buckets hold
    only its own points, so no raw ends are needed). The database groups the buckets, keeps each
    group's lowest and highest point and hands back one row per line (its steps and values as two
    arrays): a few hundred rows to parse, not one per bucket."""
    if not lines:
        return {}
    buckets = max(1, max_points // 2)
    plan = []
    for (run_id, key), (_, lo, hi) in lines.items():
        level = max(1, _rollup_level(hi - lo + 1, buckets))
        width = ROLLUP_FANOUT**level
        first, last = lo // width, hi // width
        plan.append((run_id, key, level, first, last, last - first + 1))
    values, params = _values(plan, ["bigint", "varchar", "smallint", "int", "int", "bigint"])
    # Per line (LATERAL): its buckets grouped in memory, each group's lowest and highest point,
    # then the line's points as two arrays. Grouping all lines at once sorts every bucket on disk.
    sql = f"""
        SELECT v.run_id, v.key, e.steps, e.vals
        FROM (VALUES {values}) AS v(run_id, key, level, first, last, full_buckets)
        CROSS JOIN LATERAL (
            SELECT array_agg(pt.step ORDER BY pt.step) AS steps, array_agg(pt.value ORDER BY pt.step) AS vals
            FROM (
                SELECT DISTINCT pt.step, pt.value
                FROM (
                    SELECT min(ARRAY[r.lo_value, r.lo_step::float8]) AS lo,
                           max(ARRAY[r.hi_value, -r.hi_step::float8]) AS hi
                    FROM {MetricRollup._meta.db_table} r
                    WHERE r.run_id = v.run_id AND r.key = v.key AND r.level = v.level
                      AND r.bucket BETWEEN v.first AND v.last
                    GROUP BY ((r.bucket - v.first) * %s) / v.full_buckets
                ) AS g
                CROSS JOIN LATERAL (VALUES (g.lo[2]::int, g.lo[1]), ((-g.hi[2])::int, g.hi[1])) AS pt(step, value)
            ) AS pt
        ) AS e
        WHERE e.steps IS NOT NULL
    """
    with connection.cursor() as cur:
        cur.execute(sql, [*params, buckets])
        rows = cur.fetchall()
    # A line's rollups cover all of it, so its total is its level-0 count.
    return {(r, k): Series(k, steps, vals, True, lines[(r, k)][0]) for r, k, steps, vals in rows}


def _step_bounds(run_id: int, key: str, min_step: int | None, max_step: int | None) -> tuple[int | None, int | None]:
    # Two probes of the (run, key, step) index, however long the line is.
    qs = MetricPoint.objects.filter(run_id=run_id, key=key)
    if min_step is not None:
        qs = qs.filter(step__gte=min_step)
    if max_step is not None:
        qs = qs.filter(step__lte=max_step)
    bounds = qs.aggregate(lo=Min("step"), hi=Max("step"))
    return bounds["lo"], bounds["hi"]


def _raw_series(run_id: int, key: str, lo: int, hi: int) -> Series:
    points = _raw_points(run_id, key, lo, hi)
    return Series(key, [s for s, _ in points], [v for _, v in points], False, len(points))


def _raw_points(run_id: int, key: str, lo: int, hi: int) -> list[Point]:
    qs = MetricPoint.objects.filter(run_id=run_id, key=key, step__gte=lo, step__lte=hi).order_by("step")
    return list(qs.values_list("step", "value"))


def _pg_bucketed(run_id: int, key: str, lo: int, hi: int, buckets: int) -> tuple[list[Point], int]:
    """Per bucket of the raw points, the min- and max-value points (earliest step on ties), and the
    points in range. Used for spans too short for a rollup level (under ~4 points per bucket)."""
    # One index-only range scan of (run, key, step) INCLUDE (value) and a hash aggregate.
    sql = f"""
        SELECT min(ARRAY[value, step::float8]), max(ARRAY[value, -step::float8]), count(*)
        FROM {MetricPoint._meta.db_table}
        WHERE run_id = %s AND key = %s AND step BETWEEN %s AND %s
        GROUP BY ((step - %s)::bigint * %s) / %s
    """
    with connection.cursor() as cur:
        cur.execute(sql, [run_id, key, lo, hi, lo, buckets, hi - lo + 1])
        return _envelope_points(cur.fetchall())


def bucket_min_max(points: Iterable[Point], *, lo: int, hi: int, buckets: int) -> list[Point]:
    """Portable down-sampling: per equal-width step bucket, keep the min- and max-value points.

    ``points`` must be ordered by step. Ties keep the earliest step, as the SQL path does.
    """
    span = hi - lo + 1
    low: dict[int, Point] = {}
    high: dict[int, Point] = {}
    for step, value in points:
        b = (step - lo) * buckets // span
        if b not in low or value < low[b][1]:
            low[b] = (step, value)
        if b not in high or value > high[b][1]:
            high[b] = (step, value)
    return sorted(set(low.values()) | set(high.values()))


# --- compare and studies --------------------------------------------------------------------------


def selected_runs(project: Project, ids: Sequence[int]) -> list[Run]:
    """The project's runs among ``ids``, in the order of ``ids`` (unknown ids are skipped)."""
    qs = Run.objects.filter(project=project, pk__in=list(ids)).select_related("created_by")
    by_id = {r.pk: r for r in qs}
    return [by_id[i] for i in ids if i in by_id]


def run_choices(project: Project, selected: Sequence[Run], *, limit: int, find: str = "") -> list[Run]:
    """Runs for the picker: the selected ones first, then the newest ``limit`` others matching ``find``."""
    return [*selected, *runs_search(project, find, limit=limit, exclude=[r.pk for r in selected])]


def metric_keys(runs: Sequence[Run]) -> list[str]:
    """Keys the runs logged: Run.summary holds the last value of every key, so no scan of the points."""
    return sorted({k for r in runs for k in r.summary})


def load_series(
    runs: Sequence[Run], keys: Sequence[str], *, max_points: int
) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    """(run, key) -> (steps, values), min/max bucketed to ``max_points``: at most three queries for
    any number of runs and keys (``metric_series_many``), never a scan of the point table."""
    lines = metric_series_many(runs, keys, max_points=max_points)
    return {pair: (series.steps, series.values) for pair, series in lines.items()}


def studies_with_counts(project: Project) -> QuerySet[Study]:
    """The project's studies, newest first, with their runs counted by state in the same query."""
    return (
        project.studies.select_related("created_by", "baseline")
        .annotate(
            n_runs=Count("runs", distinct=True),
            n_active=Count("runs", filter=Q(runs__status__in=ACTIVE_STATUSES), distinct=True),
            n_done=Count("runs", filter=Q(runs__status=RunStatus.SUCCEEDED), distinct=True),
            n_failed=Count("runs", filter=Q(runs__status__in=[RunStatus.FAILED, RunStatus.LOST]), distinct=True),
        )
        .order_by("-created_at")
    )


def study_runs(study: Study) -> list[Run]:
    return list(study.runs.select_related("created_by").order_by("id"))


# --- queues ------------------------------------------------------------------------------------------


RECENT_STEP_RUNS = 20  # the pool's latest runs whose step time an estimate averages


@dataclass(frozen=True)
class QueueEntry:
    run: Run
    position: int  # 1 = next to start
    starts_in: float | None  # seconds from now; None without any step time to go by


def pool_step_seconds(pool: str) -> dict[str, float]:
    """Mean step time (``timing/step_s``, seconds) of the pool's latest runs per model, plus "" for all."""
    rows = list(
        Run.objects.filter(queue=pool, started_at__isnull=False, summary__has_key="timing/step_s")
        .order_by("-started_at")
        .values_list("model_name", "summary__timing/step_s")[:RECENT_STEP_RUNS]
    )
    by_model: dict[str, list[float]] = {}
    for model, seconds in rows:
        if isinstance(seconds, int | float) and seconds > 0:
            by_model.setdefault(model, []).append(float(seconds))
            by_model.setdefault("", []).append(float(seconds))
    return {model: sum(values) / len(values) for model, values in by_model.items()}


def pool_workers(pool: str) -> int:
    """Workers of the pool that sent a heartbeat lately (at least one: a queue is served by someone)."""
    from webapp.models import Worker

    now = timezone.now()
    return max(1, sum(1 for w in Worker.objects.all() if pool in (w.queues or []) and w.is_online(now=now)))


def queue_entries(pool: str) -> tuple[list[Run], list[QueueEntry]]:
    """The pool's running runs and its queued runs with their positions and estimated starts.

    An estimate replays the queue over the pool's workers: each runs its current run to the end
    (its remaining steps at the pool's recent step time), then takes the next queued run, whose
    length is its steps at the recent step time of its model on the pool (else of any model).
    """
    running = list(
        Run.objects.filter(queue=pool, status=RunStatus.RUNNING).select_related("project").order_by("started_at", "id")
    )
    queued = list(queued_runs(pool).select_related("project"))
    pace = pool_step_seconds(pool)

    def seconds(run: Run) -> float | None:
        step_s = pace.get(run.model_name, pace.get(""))
        return None if step_s is None else max(0, run.total_steps - run.step) * step_s

    free_at = [seconds(r) for r in running]
    free_at += [0.0] * max(0, pool_workers(pool) - len(running))
    entries = []
    for position, run in enumerate(queued, start=1):
        known = [t for t in free_at if t is not None]
        start = min(known) if known and len(known) == len(free_at) else None
        if start is None:
            entries.append(QueueEntry(run, position, None))
            continue
        free_at.remove(start)
        length = seconds(run)
        free_at.append(None if length is None else start + length)
        entries.append(QueueEntry(run, position, start))
    return running, entries


def queue_entry(run: Run) -> QueueEntry | None:
    """A queued run's place in its pool (for the run page); None once it is no longer queued."""
    if run.status != RunStatus.QUEUED:
        return None
    _, entries = queue_entries(run.queue)
    return next((e for e in entries if e.run.pk == run.pk), None)


@dataclass(frozen=True)
class StudyMember:
    """A run of a study and whether the study's aggregates count it, with the reason when not obvious."""

    run: Run
    included: bool
    by_hand: bool  # the study stores a choice that overrides the default rule for this run

    @property
    def reason(self) -> str:
        status = self.run.get_status_display().lower()
        if self.by_hand:
            return f"included by hand ({status})" if self.included else "excluded by hand"
        return "" if self.included else f"excluded: {status}"


def default_included(run: Run) -> bool:
    """Failed, cancelled and lost runs are out of a study's aggregates unless included by hand."""
    return run.status not in UNTRUSTED_STATUSES


def counted_in(study: Study, run: Run) -> bool:
    """Whether ``study``'s aggregates count ``run``: the choice stored with the study, else the default rule."""
    choice = (study.run_choices or {}).get(str(run.pk))
    return choice == "include" if choice in ("include", "exclude") else default_included(run)


def study_members(study: Study) -> list[StudyMember]:
    """Every run of the study with whether its tables and curves count it."""
    members = []
    for run in study_runs(study):
        included = counted_in(study, run)
        members.append(StudyMember(run, included, by_hand=included != default_included(run)))
    return members


@dataclass(frozen=True)
class MemberCounts:
    counted: int = 0
    excluded: int = 0


def study_member_counts(studies: Sequence[Study]) -> dict[int, MemberCounts]:
    """{study id: how many of its runs its aggregates count and leave out} (as ``study_members``
    decides, so the study list and the study page agree), for any number of studies in one query."""
    by_study = {s.pk: s for s in studies}
    tally: dict[int, list[int]] = {pk: [0, 0] for pk in by_study}
    for run in Run.objects.filter(study_id__in=list(by_study)).only("id", "study_id", "status"):
        if run.study_id is not None:  # always, by the filter; says so to the type checker
            tally[run.study_id][0 if counted_in(by_study[run.study_id], run) else 1] += 1
    return {pk: MemberCounts(counted, excluded) for pk, (counted, excluded) in tally.items()}


def study_included_runs(study: Study) -> list[Run]:
    return [m.run for m in study_members(study) if m.included]


def last_k_means(runs: Sequence[Run], keys: Sequence[str], k: int) -> dict[tuple[int, str], float]:
    """{(run id, key): mean of the run's last ``k`` logged values of the key} (fewer when it logged
    fewer): the default summary of a final-metrics table (webapp.review.reports.SummaryRule). One query,
    numbered newest first per (run, key) through the (run, key, step) index."""
    if not runs or not keys or k < 1:
        return {}
    if connection.vendor == "postgresql":
        return _pg_last_k_means([r.pk for r in runs], list(keys), k)
    newest_first = Window(RowNumber(), partition_by=[F("run_id"), F("key")], order_by=F("step").desc())
    rows = (
        MetricPoint.objects.filter(run__in=[r.pk for r in runs], key__in=list(keys))
        .annotate(n=newest_first)
        .filter(n__lte=k)
        .values_list("run_id", "key", "value")
    )
    sums: dict[tuple[int, str], list[float]] = {}
    for run_id, key, value in rows:
        sums.setdefault((run_id, key), []).append(value)
    return {rk: sum(vs) / len(vs) for rk, vs in sums.items()}


def _pg_last_k_means(run_ids: list[int], keys: list[str], k: int) -> dict[tuple[int, str], float]:
    # Per (run, key) a backward scan of the (run, key, step) index that stops after k points: the
    # cost grows with runs × keys × k, not with the lines' lengths (a window over every point did).
    sql = f"""
        SELECT r.run_id, q.key, p.value
        FROM unnest(%s::bigint[]) AS r(run_id) CROSS JOIN unnest(%s::varchar[]) AS q(key)
        CROSS JOIN LATERAL (
            SELECT value FROM {MetricPoint._meta.db_table}
            WHERE run_id = r.run_id AND key = q.key ORDER BY step DESC LIMIT %s
        ) AS p
    """
    sums: dict[tuple[int, str], list[float]] = {}
    with connection.cursor() as cur:
        cur.execute(sql, [run_ids, keys, k])
        for run_id, key, value in cur.fetchall():
            sums.setdefault((run_id, key), []).append(value)
    return {rk: sum(vs) / len(vs) for rk, vs in sums.items()}
