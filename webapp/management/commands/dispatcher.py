"""``manage.py dispatcher``: the process that keeps the database's queue and the broker in step.

Every ``PSL_DISPATCH_SECONDS`` it marks runs whose heartbeat went stale as lost, fails the running
evaluations whose heartbeat went stale (``evaluations.services.evaluations_sweep_lost``) and publishes the
messages missing for queued runs and evaluations (``services.runs_dispatch``,
``evaluations.services.evaluations_dispatch``). It needs neither a worker nor the
broker to be up: a run whose only worker was killed is still marked lost, and the runs submitted
or lost while the broker was away are dispatched within one period of its return. Run one per
deployment (compose's ``dispatcher`` service; ``make demo`` starts it); two are harmless.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from webapp.evaluations.services import evaluations_dispatch, evaluations_sweep_lost
from webapp.services import runs_dispatch
from webapp.worker.execution import sweep_lost_runs

log = logging.getLogger("webapp.dispatcher")


def dispatch_once() -> None:
    """One round: the lost-work sweep (runs and evaluations), then the missing messages; each
    survives the other's outage."""
    close_old_connections()
    try:
        if lost := sweep_lost_runs():
            log.info("marked lost (stale heartbeat): %s", lost)
        if failed := evaluations_sweep_lost():
            log.info("evaluations failed as lost (stale heartbeat): %s", failed)
    except Exception:  # the database may be away; the next round retries
        log.warning("lost-run sweep failed", exc_info=True)
    try:
        runs_dispatch()
        evaluations_dispatch()
    except Exception as exc:  # the broker (or the database) is away; the next round retries
        log.warning("dispatch failed: %s", exc)


class Command(BaseCommand):
    help = "Mark stale runs lost and (re)publish the messages of queued runs, every PSL_DISPATCH_SECONDS."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit (for cron)")

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        stopped = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopped.set())
        period = settings.PSL_DISPATCH_SECONDS
        log.info("dispatcher: every %ss for queues %s", period, ", ".join(settings.PSL_QUEUES))
        while True:
            dispatch_once()
            if once or stopped.wait(period):
                return
