"""Workflows that write: creating, enqueueing, cancelling and resuming runs, studies and reviews.

Services take keyword-only arguments and enforce state transitions with compare-and-set
updates, so two actors (a user and a worker, or two workers) can never both win.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from trainer.choices import DEFAULT_PRIORITY, PRIORITIES
from trainer.config import ConfigError, StoredConfig, TrainConfig, config_values, migrate_config
from trainer.config import config_errors as trainer_config_errors
from webapp import dispatch, selectors
from webapp.models import (
    Activity,
    Comment,
    Project,
    Run,
    RunLog,
    RunStatus,
    Sample,
    Study,
    SummaryKind,
    Tag,
    Verdict,
)
from webapp.review.reports import MAX_SUMMARY_K, SummaryRule
from webapp.selectors import default_included, display, queued_runs

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request that is valid in form but not allowed in the current state (shown to the user)."""


class FieldError(ServiceError):
    """A refused value of one field (a model or dataset the run may not use); shown on that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@cache
def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def activity_record(*, project: Project, actor: Any, verb: str, target: str, url: str = "") -> Activity:
    return Activity.objects.create(project=project, actor=actor, verb=verb, target=target[:300], url=url)


def study_activity_record(*, study: Study, actor: Any, verb: str, what: str) -> Activity:
    """A change to a study in the feed: "<verb> <what> (<study>)", linking to the study's page."""
    return activity_record(
        project=study.project, actor=actor, verb=verb, target=f"{what} ({study.name})", url=study.get_absolute_url()
    )


def run_create(
    *,
    project: Project,
    user: Any,
    config: TrainConfig,
    name: str = "",
    queue: str = "",
    study: Study | None = None,
    parent: Run | None = None,
    tags: Iterable[str] = (),
    wandb: bool = False,
    enqueue: bool = True,
    override_fit: bool = False,
    priority: str = DEFAULT_PRIORITY,
    idempotency_key: str = "",
    idempotency_fingerprint: str = "",
) -> Run:
    """Create a queued run from a validated config and enqueue it once the transaction commits.

    Its model and task must be references the project's team may use, never server paths
    (``webapp.references``); a refused one raises ``FieldError``.

    A run the memory planner says cannot fit its pool (or that asks for more GPUs than a host has)
    is refused with the reason unless ``override_fit``: verl and TRL users learn it by an OOM.
    """
    from webapp.references import check_references

    queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
    if queue not in settings.PSL_QUEUES:
        raise ServiceError(f"unknown queue {queue!r}; valid: {', '.join(settings.PSL_QUEUES)}")
    try:
        check_references(config=config, project=project, user=user)
    except ConfigError as exc:
        raise FieldError(exc.field, exc.message) from None
    rank = _priority_rank(priority)
    run_check_fit(config=config, queue=queue, override=override_fit)
    with transaction.atomic():
        run = Run.objects.create(
            project=project,
            name=name or _default_name(config),
            config=config.to_dict(),
            algorithm=config.algorithm,
            model_name=config.model,
            seed=config.seed,
            queue=queue,
            gpus=config.gpus,
            total_steps=config.steps,
            created_by=user,
            code_version=code_version(),
            study=study,
            parent=parent,
            wandb_enabled=wandb,
            queued_at=timezone.now(),
            priority=rank,
            queue_rank=_next_queue_rank(),
            idempotency_key=idempotency_key,
            idempotency_fingerprint=idempotency_fingerprint,
        )
        _set_tags(run, tags)
        activity_record(project=project, actor=user, verb="launched", target=run.name, url=run.get_absolute_url())
        if enqueue:
            run_enqueue(run=run)
    return run


class IdempotencyConflict(ServiceError):
    """An Idempotency-Key already used for a different request."""


def run_create_once(*, key: str, fingerprint: str, user: Any, **create: Any) -> tuple[Run, bool]:
    """``run_create`` under a client's idempotency key: (the run, whether it was created now).

    A request repeated with the same key and the same ``fingerprint`` (a digest of the request)
    gets the run the first one created, also when both arrive at once (the key is unique per user
    in the database); the same key with another fingerprint raises ``IdempotencyConflict``.
    """

    def earlier() -> Run | None:
        run = Run.objects.filter(created_by=user, idempotency_key=key).first()
        if run is not None and run.idempotency_fingerprint != fingerprint:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was already used for a different request")
        return run

    if (run := earlier()) is not None:
        return run, False
    try:
        return run_create(user=user, idempotency_key=key, idempotency_fingerprint=fingerprint, **create), True
    except IntegrityError:
        if (run := earlier()) is None:
            raise
        return run, False


def run_check_fit(*, config: TrainConfig, queue: str, override: bool = False) -> None:
    """Raise ServiceError with the planner's reason when ``config`` cannot fit ``queue``'s GPUs.

    Overriding lifts the memory verdict only: a run needing more GPUs than one host has cannot be
    launched at all (torchrun --standalone runs on one host).
    """
    from webapp.planning import run_plan

    plan = run_plan(config, queue)
    if plan is None or plan.fits is not False:
        return
    if not override or any("host of this pool" in p for p in plan.problems):
        raise ServiceError(f"{queue}: {plan.summary()}")


def run_enqueue(*, run: Run) -> None:
    """Send the run's message after commit: a worker must never see a run that isn't there yet.

    The queued row is the record; the message only wakes a worker. If the broker is unreachable
    the run stays queued and ``runs_dispatch`` (the dispatcher, every worker's heartbeat) sends
    its message once the broker is back, so a submit never fails after its run was committed.
    """

    def send() -> None:
        try:
            task_id = dispatch.send(dispatch.EXECUTE_RUN, args=[run.pk, run.attempt], queue=run.queue)
        except Exception as exc:  # the broker is down: the reconciler publishes it later
            log.warning("run %s: could not publish its message (%s); it will be dispatched later", run.pk, exc)
            return
        Run.objects.filter(pk=run.pk).update(celery_task_id=task_id)

    transaction.on_commit(send)


DISPATCH_GRACE = timedelta(seconds=2)


def runs_dispatch(*, pools: Iterable[str] | None = None) -> dict[str, int]:
    """Publish the messages missing for the queued runs of each pool; returns {pool: sent}.

    The database is the queue of record: a pool with q queued runs needs q run messages waiting
    on its queue (a message wakes a worker for the pool's first queued run, whichever run it
    names). Messages lost by the broker (a restart without persistence) or never sent (a submit
    while it was down) are made up here. Idempotent: a duplicate finds nothing to claim and is
    dropped by the worker, since the claim is a compare-and-set. Only run messages count (an
    evaluation's message waits on the same queue), except on brokers that cannot be read without
    consuming, where every waiting message counts.
    """
    if dispatch.eager():
        return {}
    # A run committed this instant has its message on the way (run_enqueue): counting it now
    # would send a duplicate. It is counted from the next round on.
    settled = Q(queued_at__isnull=True) | Q(queued_at__lte=timezone.now() - DISPATCH_GRACE)
    sent: dict[str, int] = {}
    for pool in pools if pools is not None else settings.PSL_QUEUES:
        queued = queued_runs(pool).filter(settled)
        if not queued.exists():
            continue
        messages = dispatch.waiting(pool)
        have = dispatch.depth(pool) if messages is None else sum(m.task == dispatch.EXECUTE_RUN for m in messages)
        missing = queued.count() - have
        if missing <= 0:
            continue
        for pk, attempt in queued.values_list("pk", "attempt")[:missing]:
            task_id = dispatch.send(dispatch.EXECUTE_RUN, args=[pk, attempt], queue=pool)
            Run.objects.filter(pk=pk, celery_task_id="").update(celery_task_id=task_id)
        log.info("%s: published %s missing run message(s)", pool, missing)
        sent[pool] = missing
    return sent


def run_config(run: Run) -> TrainConfig:
    """The run's stored config as this version reads it (see ``run_stored_config`` for the notices)."""
    return run_stored_config(run).config


def run_stored_config(run: Run) -> StoredConfig:
    """The run's config migrated to this version's schema, with a notice for each field that changed."""
    return TrainConfig.from_stored(run.config)


def run_cancel(*, run: Run, user: Any) -> Run:
    """Cancel a queued run at once; ask a running one to stop (the worker finishes the job)."""
    now = timezone.now()
    if Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, finished_at=now, cancel_requested=True
    ):
        _revoke(run)
    elif not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested=True):
        raise ServiceError(f"run is {run.get_status_display().lower()}; only queued or running runs can be cancelled")
    run.refresh_from_db()
    activity_record(project=run.project, actor=user, verb="cancelled", target=run.name, url=run.get_absolute_url())
    return run


def _revoke(run: Run) -> None:
    # The claim in the task is the real guard (a cancelled run is never claimed); revoking only
    # spares the worker a wake-up. The filesystem broker does not support remote control.
    if run.celery_task_id and not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        try:
            dispatch.revoke(run.celery_task_id)
        except Exception:  # a broker hiccup must not fail the cancel itself
            log.warning("could not revoke task %s", run.celery_task_id, exc_info=True)


def run_resume(*, run: Run, user: Any) -> Run:
    """Continue a stopped run from its last checkpoint as a new attempt of the same run."""
    with transaction.atomic():
        updated = Run.objects.filter(
            pk=run.pk, status__in=[RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST]
        ).update(
            status=RunStatus.QUEUED,
            attempt=run.attempt + 1,
            cancel_requested=False,
            error="",
            queued_at=timezone.now(),
            queue_rank=_next_queue_rank(),  # to the back of its priority: resuming is a new request
            finished_at=None,
            heartbeat_at=None,
        )
        if not updated:
            raise ServiceError(f"run is {run.get_status_display().lower()}; only failed, cancelled or lost runs resume")
        run.refresh_from_db()
        _migrate_stored_config(run)
        activity_record(project=run.project, actor=user, verb="resumed", target=run.name, url=run.get_absolute_url())
        run_enqueue(run=run)
    return run


def _migrate_stored_config(run: Run) -> None:
    """Rewrite a resumed run's config in this version's schema; what changed goes on its log.

    Only renames and unknown fields are handled here: a value this version rejects fails the
    attempt with the trainer's message rather than training something else than what was stored.
    """
    values, notices = migrate_config(run.config, drop_unknown=True)
    settings_part = config_values(run.config)
    if values == settings_part:
        return
    bookkeeping = {k: v for k, v in run.config.items() if k not in settings_part}
    run.config = {**values, **bookkeeping}
    run.save(update_fields=["config"])
    for notice in notices:
        run_log_notice(run, f"stored config migrated: {notice}")


def run_config_migration_notices(run: Run) -> list[str]:
    """What resuming the run would change in its stored config (empty when it is current)."""
    return migrate_config(run.config, drop_unknown=True)[1]


def run_log_notice(run: Run, message: str, *, level: str = "warning") -> None:
    """A line on the run's log from the web tier (after the trainer's own lines of this attempt)."""
    seq = RunLog.objects.filter(run=run, attempt=run.attempt, source="web").count()
    RunLog.objects.create(run=run, attempt=run.attempt, source="web", seq=seq, level=level, message=message)


def _priority_rank(priority: str) -> int:
    if priority not in PRIORITIES:
        raise ServiceError(f"unknown priority {priority!r}; valid: {', '.join(PRIORITIES)}")
    return PRIORITIES.index(priority)


def _next_queue_rank() -> int:
    """Queue ranks grow with time (microseconds), so a newly queued run goes behind the others."""
    return int(timezone.now().timestamp() * 1_000_000)


def run_set_priority(*, run: Run, user: Any, priority: str) -> Run:
    """Change a queued run's priority; a run that has started (or ended) keeps its own."""
    rank = _priority_rank(priority)
    if not Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(priority=rank):
        raise ServiceError(f"run is {run.get_status_display().lower()}; only a queued run's priority can change")
    run.refresh_from_db()
    activity_record(
        project=run.project, actor=user, verb=f"set priority {priority} on", target=run.name, url=run.get_absolute_url()
    )
    return run


def run_queue_move(*, run: Run, user: Any, direction: str, may_pass: Callable[[Run], bool]) -> Run:
    """Swap a queued run with its neighbour of the same priority in its pool (``direction`` up or
    down the queue). ``may_pass(neighbour)`` says whether the user may reorder that run too (a run
    of a team they cannot write in is never jumped over by a reorder)."""
    if direction not in ("up", "down"):
        raise ServiceError(f"unknown direction {direction!r}; valid: up, down")
    with transaction.atomic():
        queued = list(selectors.queued_runs(run.queue).filter(priority=run.priority).select_for_update())
        at = next((i for i, r in enumerate(queued) if r.pk == run.pk), None)
        if at is None:
            raise ServiceError(f"run is {run.get_status_display().lower()}; only a queued run can be moved")
        other_at = at - 1 if direction == "up" else at + 1
        if not 0 <= other_at < len(queued):
            raise ServiceError(f"the run is already {'first' if direction == 'up' else 'last'} of its priority")
        mine, other = queued[at], queued[other_at]
        if not may_pass(other):
            raise ServiceError("the neighbouring run belongs to a project you cannot change; it keeps its place")
        # Equal ranks (rows from before ranks existed) are ordered by id: make them distinct first.
        mine_rank, other_rank = mine.queue_rank, other.queue_rank
        if mine_rank == other_rank:
            mine_rank, other_rank = (mine_rank, mine_rank + 1) if mine.pk < other.pk else (mine_rank + 1, mine_rank)
        Run.objects.filter(pk=mine.pk).update(queue_rank=other_rank)
        Run.objects.filter(pk=other.pk).update(queue_rank=mine_rank)
    run.refresh_from_db()
    verb = f"moved {direction} the queue"
    activity_record(project=run.project, actor=user, verb=verb, target=run.name, url=run.get_absolute_url())
    return run


def run_clone_initial(run: Run) -> dict[str, Any]:
    """Form initial data for "Clone": the run's config plus its queue and a derived name."""
    return {**run_config(run).to_dict(), "name": f"{run.name} (clone)", "queue": run.queue}


def _default_name(config: TrainConfig) -> str:
    label = {"policy_split": f"ps η={config.eta:g}", "grpo": "grpo"}.get(config.algorithm, config.algorithm)
    return f"{label} {config.model} s{config.seed}"


def _set_tags(run: Run, names: Iterable[str]) -> None:
    tags = [Tag.objects.get_or_create(project=run.project, name=n.strip()[:50])[0] for n in names if n.strip()]
    run.tags.set(tags)


# --- ablation grids ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridCell:
    """One combination of an ablation grid: its factor values and the config they make, or the
    reason they make none. Built once (the form's preview) and passed on to ``study_create_grid``."""

    values: dict[str, Any]
    config: TrainConfig | None
    error: str = ""

    @property
    def shown(self) -> list[Any]:
        return [display(v) for v in self.values.values()]

    @property
    def label(self) -> str:
        """``eta=0.03, rollout_sharing=true``: the values as the config holds them (true/false as typed)."""
        data = self.config.to_dict() if self.config else self.values
        return ", ".join(f"{k}={json.dumps(data[k])}" for k in self.values)


def grid_cells(base: TrainConfig, factors: dict[str, list[Any]]) -> list[GridCell]:
    """Every combination of the factors applied to the base config, each validated."""
    combos = [dict(zip(factors, combo, strict=True)) for combo in itertools.product(*factors.values())]
    return config_cells(base, combos)


def config_cells(base: TrainConfig, points: Sequence[dict[str, Any]]) -> list[GridCell]:
    """Each point (field values: a grid's combination, a random search's draw) applied to the base config."""
    cells = []
    for values in points:
        try:
            cells.append(GridCell(values, TrainConfig.from_dict({**base.to_dict(), **values})))
        except ConfigError as exc:
            cells.append(GridCell(values, None, f"{exc.field}: {exc.message}"))
    return cells


def study_create_grid(
    *,
    project: Project,
    user: Any,
    name: str,
    factors: dict[str, list[Any]],
    cells: Sequence[GridCell],
    queue: str = "",
    description: str = "",
    wandb: bool = False,
    tags: Iterable[str] = (),
    override_fit: bool = False,
    priority: str = DEFAULT_PRIORITY,
    search: dict[str, Any] | None = None,
) -> Study:
    """One study and one run per cell (``grid_cells`` or ``config_cells``); refuses one with an invalid cell.
    ``search`` records how the cells were chosen and the successive halving to apply (Study.search)."""
    runs = [(c.label, c.config) for c in cells if c.config is not None]
    if not cells or len(runs) < len(cells):
        bad = len(cells) - len(runs)
        raise ServiceError(f"{bad} of {len(cells)} runs have an invalid config" if cells else "the grid is empty")
    with transaction.atomic():
        study = Study.objects.create(
            project=project, name=name, description=description, factors=factors, created_by=user, search=search or {}
        )
        for label, config in runs:
            run_create(
                project=project,
                user=user,
                config=config,
                name=f"{name}: {label}",
                queue=queue,
                study=study,
                wandb=wandb,
                tags=tags,
                override_fit=override_fit,
                priority=priority,
            )
        first = study.runs.order_by("id").first()
        study.baseline = first
        study.save(update_fields=["baseline"])
        activity_record(
            project=project, actor=user, verb="launched study", target=study.name, url=study.get_absolute_url()
        )
    return study


def study_set_included(*, study: Study, run: Run, include: bool, user: Any) -> Study:
    """Count ``run`` in the study's aggregates or leave it out; only choices that differ from the
    default rule (failed, cancelled and lost runs out) are stored."""
    if run.study_id != study.pk:
        raise ServiceError("pick a run of this study")
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        choices = {k: v for k, v in study.run_choices.items() if k != str(run.pk)}
        if include != default_included(run):
            choices[str(run.pk)] = "include" if include else "exclude"
        study.run_choices = choices
        study.save(update_fields=["run_choices"])
        verb = "included in the study" if include else "excluded from the study"
        study_activity_record(study=study, actor=user, verb=verb, what=run.name)
    return study


def study_set_baseline(*, study: Study, run: Run, user: Any) -> Study:
    """Make ``run`` (a run of the study) the reference of its deltas and significance tests."""
    if run.study_id != study.pk:
        raise ServiceError("the baseline must be a run of this study")
    Study.objects.filter(pk=study.pk).update(baseline=run)
    study.baseline = run
    study_activity_record(study=study, actor=user, verb="set the study baseline to", what=run.name)
    return study


def study_set_summary(*, study: Study, kind: str, k: int, user: Any) -> Study:
    """How the study's final-metrics table summarises each run's curve: the mean of its last ``k``
    logged steps, or its last logged value (webapp.review.reports.SummaryRule)."""
    if kind not in SummaryKind.values:
        raise ServiceError(f"unknown summary {kind!r}; valid: {', '.join(SummaryKind.values)}")
    if not 1 <= k <= MAX_SUMMARY_K:
        raise ServiceError(f"k must be between 1 and {MAX_SUMMARY_K}, got {k}")
    Study.objects.filter(pk=study.pk).update(summary_kind=kind, summary_k=k)
    study.summary_kind, study.summary_k = kind, k
    study_activity_record(study=study, actor=user, verb="summarised runs by the", what=SummaryRule(kind, k).label)
    return study


# --- review -------------------------------------------------------------------------------------


def run_tag_add(*, run: Run, name: str, user: Any) -> None:
    tag, _ = Tag.objects.get_or_create(project=run.project, name=name)
    run.tags.add(tag)
    activity_record(
        project=run.project, actor=user, verb=f"tagged “{name}”", target=run.name, url=run.get_absolute_url()
    )


def run_tag_remove(*, run: Run, name: str, user: Any) -> None:
    tag = Tag.objects.filter(project=run.project, name=name).first()
    if tag is not None and run.tags.filter(pk=tag.pk).exists():
        run.tags.remove(tag)
        activity_record(
            project=run.project,
            actor=user,
            verb=f"removed tag “{name}” from",
            target=run.name,
            url=run.get_absolute_url(),
        )


def _target_fields(target: Run | Study | Sample) -> dict[str, Any]:
    if isinstance(target, Run):
        return {"run": target}
    if isinstance(target, Study):
        return {"study": target}
    return {"sample": target}


def _target_project(target: Run | Study | Sample) -> Project:
    return target.run.project if isinstance(target, Sample) else target.project


def comment_create(*, target: Run | Study | Sample, author: Any, body: str) -> Comment:
    body = body.strip()
    if not body:
        raise ServiceError("a comment needs some text")
    project = _target_project(target)
    comment = Comment.objects.create(project=project, author=author, body=body, **_target_fields(target))
    activity_record(project=project, actor=author, verb="commented on", target=str(target), url=_target_url(target))
    return comment


def verdict_set(*, target: Run | Study | Sample, author: Any, verdict: str, note: str = "") -> Verdict:
    project = _target_project(target)
    obj = Verdict.objects.create(
        project=project, author=author, verdict=verdict, note=note[:500], **_target_fields(target)
    )
    activity_record(
        project=project,
        actor=author,
        verb=f"set verdict “{obj.get_verdict_display()}” on",
        target=str(target),
        url=_target_url(target),
    )
    return obj


def _target_url(target: Run | Study | Sample) -> str:
    if isinstance(target, Sample):
        return reverse("webapp-sample-review", args=[target.pk])
    return target.get_absolute_url()


def config_errors(data: dict[str, Any]) -> dict[str, str]:
    """Validate config data with the trainer's own rules; returns {field: message} (empty = valid)."""
    return {exc.field: exc.message for exc in trainer_config_errors(data)}
