"""An evaluation whose worker is SIGKILLed mid-evaluation, on real processes: the evaluator child dies
with the worker, the lost-work sweep of the dispatcher (no worker alive) fails the evaluation with the
reason on the evaluations page, and a fresh worker then evaluates the same checkpoint again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil
import pytest
from django.urls import reverse

from tests.webapp.test_execution import _wait
from tests.workers import DispatcherProcess, WorkerProcess
from webapp.evaluations import services as service
from webapp.models import EvalStatus, Evaluation, Run
from webapp.worker.execution import run_dir

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _evaluators(run: Run) -> list[psutil.Process]:
    """Evaluator processes alive for ``run`` (their --out names a file in the run's folder)."""
    folder = str(run_dir(run.pk) / "evaluations")
    alive = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        ours = "trainer.evaluation.evaluate" in cmdline and any(arg.startswith(folder) for arg in cmdline)
        if ours and proc.status() != psutil.STATUS_ZOMBIE:
            alive.append(proc)
    return alive


def _hosts(run: Run) -> set[str]:
    return {host.split("@")[0] for host in Evaluation.objects.filter(run=run).values_list("host", flat=True)}


def _statuses(run: Run) -> set[str]:
    return set(Evaluation.objects.filter(run=run).values_list("status", flat=True))


def test_an_evaluation_whose_worker_is_killed_fails_as_lost_and_a_fresh_worker_evaluates_again(
    start_worker: Callable[..., WorkerProcess],
    start_dispatcher: Callable[..., DispatcherProcess],
    make_run: Callable[..., Run],
    client_for: Any,
    alice: Any,
) -> None:
    run = make_run(name="evaluated", status="succeeded", model="tiny-random", task="arith")
    # Step 0 is the base model (tiny-random): enough questions that the evaluator is still sampling
    # when the worker is killed, a few seconds after its first heartbeat.
    long = service.EvalRequest(step=0, benchmarks=("arith",), k=4, limit=16, max_new_tokens=64)
    service.evaluations_create(run=run, request=long, user=alice)
    worker = start_worker("w-eval-killed")

    def beating() -> bool:
        rows = list(Evaluation.objects.filter(run=run))
        return len(rows) == 2 and all(ev.started_at and ev.heartbeat_at > ev.started_at for ev in rows)

    _wait(beating, timeout=120, what="the evaluation's heartbeat", worker=worker)
    assert _statuses(run) == {EvalStatus.RUNNING}
    assert _hosts(run) == {"w-eval-killed"}
    assert _evaluators(run), "the evaluator should be running"

    worker.kill()
    _wait(lambda: not _evaluators(run), timeout=10, what="the evaluator to die with its worker")
    dispatcher = start_dispatcher()  # no worker is alive: the dispatcher's sweep alone finds it
    took = _wait(lambda: _statuses(run) == {EvalStatus.FAILED}, timeout=60, what="the sweep", worker=dispatcher)
    print(f"failed as lost {took:.1f} s after the kill (PSL_LOST_AFTER_SECONDS=8)")
    for ev in Evaluation.objects.filter(run=run):
        assert ev.error.startswith("lost: the worker w-eval-killed@") and "stopped sending heartbeats" in ev.error
        assert ev.finished_at is not None
    page = client_for(alice).get(reverse("webapp-run-evaluations", args=[run.pk])).content.decode()
    assert "stopped sending heartbeats while it evaluated" in page

    short = service.EvalRequest(step=0, benchmarks=("arith",), k=2, limit=2, max_new_tokens=8)
    service.evaluations_create(run=run, request=short, user=alice)  # replaces the failed rows
    fresh = start_worker("w-eval-fresh")
    _wait(lambda: _statuses(run) == {EvalStatus.SUCCEEDED}, timeout=180, what="the new evaluation", worker=fresh)
    assert _hosts(run) == {"w-eval-fresh"}
