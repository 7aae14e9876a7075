"""Celery tasks: thin adapters that take ids and call the execution layer."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings

from webapp import dispatch
from webapp.evaluations.runner import evaluations_execute
from webapp.evaluations.services import evaluations_dispatch, evaluations_sweep_lost
from webapp.models import Run
from webapp.services import runs_dispatch
from webapp.worker import execution

log = logging.getLogger(__name__)
_current_run: dict[str, int | None] = {"id": None}
_current_evaluations: list[int] = []  # what this worker evaluates now: its own sweep leaves them alone


# A run message wakes a worker of the run's pool, which starts the first queued run of that pool
# (the database's order: priority, then queue rank). acks_late is safe: a redelivered or duplicate
# message finds nothing left to claim and exits.
@shared_task(name=dispatch.EXECUTE_RUN, acks_late=True, ignore_result=True)
def execute_run(run_id: int, attempt: int = 0) -> str:
    pool = Run.objects.filter(pk=run_id).values_list("queue", flat=True).first()
    if pool is not None and execution.SHUTDOWN.is_set():
        # A worker on its way out (it took this message before it saw the signal) starts nothing:
        # it passes the ticket on to the pool's next worker, so every queued run keeps one.
        dispatch.send(dispatch.EXECUTE_RUN, args=[run_id, attempt], queue=pool)
        return "passed on"
    run = execution.claim_next(pool, host=execution.worker_identity()) if pool is not None else None
    if run is None:
        log.info("no queued run left in the pool of run %s (attempt %s); skipping", run_id, attempt)
        return "skipped"
    _current_run["id"] = run.pk
    try:
        return execution.Supervisor(run, worker_name=execution.worker_identity()).execute()
    finally:
        _current_run["id"] = None


@shared_task(name=dispatch.PING, ignore_result=True)
def ping(value: str) -> str:
    """A no-op round trip used by the embedded-defaults smoke test and `manage.py check_worker`."""
    from pathlib import Path

    marker = Path(settings.VAR_DIR) / "ping" / value
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("pong")
    return "pong"


class _Heartbeat(threading.Thread):
    """Advertises this worker, sweeps lost runs and evaluations and sends the messages missing for the queued runs
    of its own pools (services.runs_dispatch, as the dispatcher does) every PSL_HEARTBEAT_SECONDS."""

    def __init__(self, queues: list[str]) -> None:
        super().__init__(daemon=True, name="psl-heartbeat")
        self.queues = queues
        self.stopped = threading.Event()

    def run(self) -> None:
        from django.db import close_old_connections

        while not self.stopped.is_set():
            try:
                close_old_connections()
                execution.worker_heartbeat(
                    name=execution.worker_identity(), queues=self.queues, current_run_id=_current_run["id"]
                )
                execution.sweep_lost_runs(exclude=_current_run["id"])
                evaluations_sweep_lost(exclude=list(_current_evaluations))
            except Exception:  # the database may be briefly away; the next beat retries
                log.warning("worker heartbeat failed", exc_info=True)
            try:
                runs_dispatch(pools=self.queues)
                evaluations_dispatch(pools=self.queues)
            except Exception as exc:  # the broker may be away; the next beat retries
                log.warning("dispatch from the heartbeat failed: %s", exc)
            self.stopped.wait(settings.PSL_HEARTBEAT_SECONDS)


_heartbeat: _Heartbeat | None = None


@worker_ready.connect
def _start_heartbeat(sender: object = None, **kwargs: object) -> None:
    """Start beating in the worker's main process (run workers use the solo pool, see README)."""
    global _heartbeat
    hostname = getattr(sender, "hostname", "")
    if hostname:
        execution.set_worker_identity(hostname)
    task_consumer = getattr(sender, "task_consumer", None)
    queues = sorted(q.name for q in task_consumer.queues) if task_consumer is not None else []
    _heartbeat = _Heartbeat(queues)
    _heartbeat.start()


@worker_shutting_down.connect
def _stop_heartbeat(**kwargs: object) -> None:
    # A warm shutdown waits for the running task: tell it to stop its trainer and requeue the run.
    execution.SHUTDOWN.set()
    if _heartbeat is not None:
        _heartbeat.stopped.set()


# acks_late is safe: a redelivered message finds the evaluations already claimed and skips them.
@shared_task(name=dispatch.EVALUATE_CHECKPOINT, acks_late=True, ignore_result=True)
def evaluate_run_checkpoint(evaluation_ids: list[int]) -> str:
    """Evaluate one checkpoint (rows of one run and step) in a child process; see webapp.evaluations."""
    _current_evaluations[:] = evaluation_ids
    try:
        return evaluations_execute(evaluation_ids, host=execution.worker_identity())
    finally:
        _current_evaluations.clear()
