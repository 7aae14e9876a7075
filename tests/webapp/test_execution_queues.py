"""A real worker takes a pool's runs in the database's order, whatever order their messages wait in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.webapp.test_execution import _config, _wait
from tests.workers import WorkerProcess
from webapp.models import Run, RunStatus
from webapp.services import run_create, run_queue_move, run_set_priority

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_worker_starts_runs_by_priority_then_by_their_place_in_the_queue(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    runs = {
        name: run_create(project=project, user=alice, config=_config(steps=1), name=name, priority=priority)
        for name, priority in [("a", "normal"), ("b", "normal"), ("c", "low"), ("d", "normal")]
    }
    # Steered while queued: d raised to high, b moved ahead of a.
    run_set_priority(run=runs["d"], user=alice, priority="high")
    run_queue_move(run=runs["b"], user=alice, direction="up", may_pass=lambda other: True)
    worker = start_worker("w-queue")

    _wait(
        lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 4,
        timeout=300,
        what="the four runs to succeed",
        worker=worker,
    )

    started = list(Run.objects.order_by("started_at").values_list("name", flat=True))
    assert started == ["d", "b", "a", "c"]
