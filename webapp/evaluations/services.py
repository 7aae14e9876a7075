"""Evaluation workflows: create, enqueue, schedule after training, store a report, fail; the
worker's claim and heartbeat, and the sweep that fails an evaluation whose worker died.

One Evaluation row is one (run, checkpoint step, benchmark, mode). Rows created together share
their settings and go to the worker as one task (``webapp.evaluations.runner``), which runs
``python -m trainer.evaluation.evaluate`` once for all of them as a child process, then stores
each (benchmark, mode) report here: aggregate metrics in ``Evaluation.metrics`` (``accuracy`` as
a fraction, ``accuracy_ci``, ``entropy_bits``, ``pass_at_k``, ``unique_correct``, ``kl_to_other``,
creative diversity and judge scores; see ``trainer.evaluation.evaluate``) and one EvalResult per
sample (score 1/0, creative samples 0 with ``metrics["graded"] = False``). The study table
(``webapp.review.reports``) reads exactly these: ``accuracy``, ``entropy_bits`` and per-question
correctness (score > 0.5) of the EvalResult rows.

Step 0 is the untrained base model (``run.model_name``); any other step must be a checkpoint of
the run that is still on disk.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from trainer.choices import MODES
from trainer.config import EVAL_SAMPLING
from trainer.data.benchmarks import BENCHMARK_NAMES, TASK_BENCHMARKS, benchmark_problem
from webapp import dispatch
from webapp.evaluations.selectors import checkpoint_steps, is_model_folder, stale_evaluations
from webapp.models import Checkpoint, EvalResult, EvalStatus, Evaluation, Run, RunStatus
from webapp.services import DISPATCH_GRACE, ServiceError, activity_record

log = logging.getLogger(__name__)

ACTIVE = (EvalStatus.QUEUED, EvalStatus.RUNNING)
# The error of an evaluation whose worker died while it ran (evaluations_sweep_lost).
LOST_PREFIX = "lost: "
MAX_K = 64
# What a run gets when it succeeds (evaluations_schedule_final); settings.PSL_EVAL_FINAL overrides keys.
FINAL_DEFAULTS: dict[str, Any] = {
    "k": 4,
    "limit": 64,
    "temperature": EVAL_SAMPLING.temperature,
    "top_k": EVAL_SAMPLING.top_k,
    "top_p": EVAL_SAMPLING.top_p,
    "modes": list(MODES),
    "benchmarks": None,
    "include_base": False,
}


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate: one checkpoint step, some benchmarks and modes, one set of sampling settings."""

    step: int
    benchmarks: tuple[str, ...]
    modes: tuple[str, ...] = MODES
    k: int = EVAL_SAMPLING.k
    limit: int | None = None
    max_new_tokens: int = EVAL_SAMPLING.max_new_tokens
    temperature: float = EVAL_SAMPLING.temperature
    top_k: int = EVAL_SAMPLING.top_k
    top_p: float = EVAL_SAMPLING.top_p
    judge: bool = False

    def settings(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "limit": self.limit,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "judge": self.judge,
        }


def model_for_step(run: Run, step: int) -> str:
    """What the evaluator loads: the base model at step 0, else the checkpoint folder."""
    if step == 0:
        return run.model_name
    ckpt = Checkpoint.objects.filter(run=run, step=step).first()
    if ckpt is None:
        raise ServiceError(f"run {run.pk} has no checkpoint at step {step}")
    if not is_model_folder(ckpt.path):
        raise ServiceError(
            f"the checkpoint of step {step} ({ckpt.reference}) is no longer on disk; "
            "older checkpoints are pruned (keep_checkpoints)"
        )
    return ckpt.path


def judge_configured() -> bool:
    return bool(settings.JUDGE_API_URL)


# --- create and enqueue -----------------------------------------------------------------------------


def evaluations_create(*, run: Run, request: EvalRequest, user: Any = None, enqueue: bool = True) -> list[Evaluation]:
    """Queue one evaluation per (benchmark, mode) of ``request`` and send them as one task after commit.

    A finished evaluation of the same (step, benchmark, mode) is replaced (its samples are
    deleted); one that is queued or running makes the whole request fail.
    """
    _validate(run, request)
    with transaction.atomic():
        existing = Evaluation.objects.select_for_update().filter(
            run=run, step=request.step, benchmark__in=request.benchmarks, mode__in=request.modes
        )
        busy = [str(ev) for ev in existing if ev.status in ACTIVE]
        if busy:
            raise ServiceError(f"already queued or running: {', '.join(busy)}")
        existing.delete()
        evals = [
            Evaluation.objects.create(run=run, step=request.step, benchmark=b, mode=m, settings=request.settings())
            for b in request.benchmarks
            for m in request.modes
        ]
        target = ", ".join(request.benchmarks) + f" at step {request.step}"
        activity_record(
            project=run.project,
            actor=user,
            verb="evaluated",
            target=f"{run.name}: {target}",
            url=run.get_absolute_url() + "evaluations/",
        )
        if enqueue:
            evaluations_enqueue(evaluations=evals)
    return evals


def _validate(run: Run, request: EvalRequest) -> None:
    if not request.benchmarks or not request.modes:
        raise ServiceError("choose at least one benchmark and one mode")
    unknown = [b for b in request.benchmarks if b not in BENCHMARK_NAMES]
    if unknown or any(m not in MODES for m in request.modes):
        raise ServiceError(f"unknown benchmark or mode: {', '.join(unknown) or ', '.join(request.modes)}")
    if not 1 <= request.k <= MAX_K:
        raise ServiceError(f"k must be between 1 and {MAX_K}")
    if request.judge and not judge_configured():
        raise ServiceError("no LLM judge is configured (JUDGE_API_URL)")
    for name in request.benchmarks:
        if problem := benchmark_problem(name, settings.PSL_DATA_DIR):
            raise ServiceError(problem)
    model_for_step(run, request.step)


def evaluations_enqueue(*, evaluations: Sequence[Evaluation]) -> None:
    """One task per (run, step) on the run's queue, sent once the rows are committed."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    queues: dict[tuple[int, int], str] = {}
    for ev in evaluations:
        groups[(ev.run_id, ev.step)].append(ev.pk)
        queues[(ev.run_id, ev.step)] = ev.run.queue

    def send() -> None:
        for key, ids in groups.items():
            try:
                dispatch.send(dispatch.EVALUATE_CHECKPOINT, args=[ids], queue=queues[key])
            except Exception as exc:  # the broker is down: evaluations_dispatch sends it later
                log.warning("evaluations %s: could not publish (%s); they will be dispatched later", ids, exc)

    transaction.on_commit(send)


def evaluations_dispatch(*, pools: Iterable[str] | None = None) -> dict[str, int]:
    """Publish a message for every (run, step) of queued evaluations that has none waiting (a
    broker restart lost it, or it was never sent); returns {pool: messages sent}. Idempotent: the
    runner claims each evaluation with a compare-and-set, so a duplicate finds nothing to claim.
    Brokers that cannot be read without consuming are left alone."""
    if dispatch.eager():
        return {}
    settled = timezone.now() - DISPATCH_GRACE  # a group committed this instant has its message on the way
    sent: dict[str, int] = {}
    for pool in pools if pools is not None else settings.PSL_QUEUES:
        queued = Evaluation.objects.filter(status=EvalStatus.QUEUED, run__queue=pool, created_at__lte=settled)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for pk, run_id, step in queued.order_by("pk").values_list("pk", "run_id", "step"):
            groups[(run_id, step)].append(pk)
        if not groups or (messages := dispatch.waiting(pool)) is None:
            continue
        waiting = {pk for m in messages if m.task == dispatch.EVALUATE_CHECKPOINT for pk in m.args[0]}
        missing = [ids for ids in groups.values() if not waiting.intersection(ids)]
        for ids in missing:
            dispatch.send(dispatch.EVALUATE_CHECKPOINT, args=[ids], queue=pool)
        if missing:
            log.info("%s: published %s missing evaluation message(s)", pool, len(missing))
            sent[pool] = len(missing)
    return sent


def evaluations_schedule_final(run: Run, *, user: Any = None) -> list[Evaluation]:
    """Evaluate a succeeded run's last checkpoint with the end-of-training defaults (idempotent).

    Benchmarks: ``PSL_EVAL_FINAL["benchmarks"]`` if set, else the run's training task when it is
    a benchmark (``arith`` → its held-out test split). Both modes, k = 4, 64 questions, the run's
    max_new_tokens, T = 0.6 / top-k 20 / top-p 0.95; ``include_base`` also evaluates step 0 (the
    study table's "Original" row). Combinations that already exist are skipped.
    """
    if run.status != RunStatus.SUCCEEDED:
        return []
    cfg = {**FINAL_DEFAULTS, **{k: v for k, v in settings.PSL_EVAL_FINAL.items() if v is not None}}
    task = str(run.config.get("task", ""))
    own = [TASK_BENCHMARKS[task]] if task in TASK_BENCHMARKS else []
    names = cfg["benchmarks"] if cfg["benchmarks"] is not None else own
    names = [b for b in names if benchmark_problem(b, settings.PSL_DATA_DIR) is None]
    trained = [s for s in checkpoint_steps(run) if s > 0]
    if not names or not trained:
        return []
    steps = [0, trained[-1]] if cfg["include_base"] else [trained[-1]]
    created: list[Evaluation] = []
    for step in steps:
        have = set(Evaluation.objects.filter(run=run, step=step).values_list("benchmark", "mode"))
        benchmarks = tuple(b for b in names if any((b, m) not in have for m in cfg["modes"]))
        if not benchmarks:
            continue
        request = EvalRequest(
            step=step,
            benchmarks=benchmarks,
            modes=tuple(cfg["modes"]),
            k=cfg["k"],
            limit=cfg["limit"],
            max_new_tokens=int(run.config.get("max_new_tokens", EVAL_SAMPLING.max_new_tokens)),
            temperature=cfg["temperature"],
            top_k=cfg["top_k"],
            top_p=cfg["top_p"],
        )
        try:
            created += evaluations_create(run=run, request=request, user=user)
        except ServiceError as exc:  # e.g. one already queued by hand: the final evaluation is best effort
            log.info("run %s: final evaluation at step %s not scheduled: %s", run.pk, step, exc)
    return created


# --- results -----------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a model can produce it."""
    return text.replace("\x00", "\ufffd")


def evaluation_store(evaluation: Evaluation, mode_report: dict[str, Any], *, title: str = "") -> Evaluation:
    """Write one (benchmark, mode) report: its samples as EvalResult rows and its metrics; mark it succeeded."""
    samples = mode_report["samples"]
    metrics = dict(mode_report["metrics"])
    judge_errors = [
        {"question_id": s["question_id"], "index": s["index"], "error": s["judge_error"]}
        for s in samples
        if s.get("judge_error")
    ]
    if judge_errors:
        metrics["judge_errors"] = judge_errors[:50]
    if title:
        metrics["title"] = title
    with transaction.atomic():
        EvalResult.objects.filter(evaluation=evaluation).delete()
        EvalResult.objects.bulk_create(
            [
                EvalResult(
                    evaluation=evaluation,
                    question_id=str(s["question_id"])[:100],
                    index=s["index"],
                    response=_clean(s["response"]),
                    score=float(s["score"] or 0.0),
                    length=s["length"],
                    entropy_bits=s.get("entropy_bits"),
                )
                for s in samples
            ],
            batch_size=500,
        )
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status=EvalStatus.SUCCEEDED, metrics=metrics, error="", finished_at=timezone.now()
        )
    evaluation.refresh_from_db()
    return evaluation


def evaluations_fail(evaluation_ids: Iterable[int], error: str) -> None:
    Evaluation.objects.filter(pk__in=list(evaluation_ids)).update(
        status=EvalStatus.FAILED, error=error[-5000:], finished_at=timezone.now()
    )


# --- the worker's claim, its heartbeat, and the sweep of lost evaluations ---------------------------


def evaluations_claim(evaluation_ids: Iterable[int], *, host: str) -> list[int]:
    """Compare-and-set queued → running for each row, recording the worker and a first heartbeat;
    returns the ids this worker won (a duplicate delivery wins none)."""
    now = timezone.now()
    return [
        pk
        for pk in evaluation_ids
        if Evaluation.objects.filter(pk=pk, status=EvalStatus.QUEUED).update(
            status=EvalStatus.RUNNING, host=host, started_at=now, heartbeat_at=now, error=""
        )
    ]


def evaluations_beat(evaluation_ids: Iterable[int], *, host: str) -> None:
    """Refresh the heartbeat of the evaluations ``host`` runs; best effort (the next beat retries).

    Like a run's heartbeat, it takes back an evaluation that a sweep failed as lost while this
    worker could not reach the database: it is alive."""
    mine = Evaluation.objects.filter(pk__in=list(evaluation_ids), host=host).filter(
        Q(status=EvalStatus.RUNNING) | Q(status=EvalStatus.FAILED, error__startswith=LOST_PREFIX)
    )
    try:
        mine.update(status=EvalStatus.RUNNING, heartbeat_at=timezone.now(), error="", finished_at=None)
    except (DatabaseError, InterfaceError):
        with contextlib.suppress(DatabaseError, InterfaceError):
            connection.close()  # the next beat reconnects


def evaluations_sweep_lost(*, exclude: Iterable[int] = ()) -> list[int]:
    """Fail the running evaluations whose heartbeat went stale (``PSL_LOST_AFTER_SECONDS``, as for
    runs): their worker was killed, crashed or lost its network, and its evaluator child died with
    it. They are failed, not requeued, as a killed run is ``lost`` and not retried by itself: what
    killed the worker (the host ran out of memory, say) would kill the next one too. Queue the
    evaluation again from the page (a finished one is replaced). ``exclude``: the evaluations the
    calling worker runs itself (it knows they are alive)."""
    older_than = timedelta(seconds=settings.PSL_LOST_AFTER_SECONDS)
    stale = stale_evaluations(older_than=older_than).exclude(pk__in=list(exclude))
    failed = []
    for pk, host in stale.order_by("pk").values_list("pk", "host"):
        reason = (
            f"{LOST_PREFIX}the worker {host or '(unknown)'} stopped sending heartbeats while it evaluated "
            "(killed, crashed or lost its network); queue the evaluation again"
        )
        # Compare-and-set: a heartbeat that arrived since the read keeps it running.
        if (
            stale_evaluations(older_than=older_than)
            .filter(pk=pk)
            .update(status=EvalStatus.FAILED, error=reason, finished_at=timezone.now())
        ):
            failed.append(pk)
    return failed
