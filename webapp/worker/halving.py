"""Successive halving for a study's runs, judged by the worker as the run's metrics arrive.

When a run of a study with ``search.halving`` reaches a rung (a step), its metric at that step is
compared with what the study's earlier runs had at the same step (``trainer.search.halving_stops``);
a run below the cutoff is asked to stop, exactly as a user's cancel does: the trainer checkpoints
at its next safe point and the run ends ``cancelled``, with the reason on its log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from trainer.search import Halving, halving_stops
from webapp.models import MetricPoint, Run, RunStatus
from webapp.services import activity_record, run_log_notice

log = logging.getLogger(__name__)


def study_halving(run: Run) -> Halving | None:
    study = run.study
    settings = (study.search or {}).get("halving") if study else None
    return Halving.from_dict(settings) if settings else None


def value_at(run_ids: Iterable[int], key: str, step: int) -> dict[int, float]:
    """Per run: ``key``'s value at the newest logged step ≤ ``step``."""
    newest: dict[int, tuple[int, float]] = {}
    points = MetricPoint.objects.filter(run_id__in=list(run_ids), key=key, step__lte=step)
    for run_id, at, value in points.values_list("run_id", "step", "value"):
        if run_id not in newest or at > newest[run_id][0]:
            newest[run_id] = (at, value)
    return {run_id: value for run_id, (_, value) in newest.items()}


class HalvingWatcher:
    """Fed the events a run's pump committed; judges each rung once, the first time it is reached."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.halving = study_halving(run)
        self.judged: set[int] = set()
        self.stopped = False  # this run was asked to stop: its supervisor passes it on at once

    def events(self, events: Iterable[dict[str, Any]]) -> None:
        if self.halving is None:
            return
        steps = [e["step"] for e in events if e.get("kind") == "metrics" and self.halving.metric in e.get("values", {})]
        if not steps:
            return
        reached = max(steps)
        for rung in self.halving.rungs:
            if rung <= reached and rung not in self.judged:
                self.judged.add(rung)
                try:
                    if self.judge(rung):
                        self.stopped = True
                        return
                except Exception:  # a failed judgement must never fail the run it judges
                    log.exception("run %s: successive halving at step %s failed", self.run.pk, rung)

    def judge(self, rung: int) -> bool:
        """Compare this run at ``rung`` with the study's runs that reached it before; True if stopped."""
        assert self.halving is not None and self.run.study_id is not None
        h = self.halving
        others = Run.objects.filter(study_id=self.run.study_id, step__gte=rung).exclude(pk=self.run.pk)
        recorded = value_at(others.values_list("pk", flat=True), h.metric, rung)
        mine = value_at([self.run.pk], h.metric, rung).get(self.run.pk)
        if mine is None:
            return False
        stop, cutoff = halving_stops(mine, list(recorded.values()), reduction=h.reduction, mode=h.mode)
        better = "higher" if h.mode == "max" else "lower"
        if cutoff is None:
            verdict = "the first run at this rung: continues"
        else:
            earlier = f"{len(recorded)} earlier run" + ("s" if len(recorded) != 1 else "")
            side = ("worse than" if stop else "within") + f" the best 1/{h.reduction} of {earlier}"
            verdict = f"cutoff {cutoff:.4g} ({better} is better), {side}: " + ("stopped" if stop else "continues")
        message = f"successive halving at step {rung}: {h.metric} = {mine:.4g}, {verdict}"
        if not stop:
            run_log_notice(self.run, message, level="info")
            return False
        with transaction.atomic():
            asked = Run.objects.filter(pk=self.run.pk, status=RunStatus.RUNNING).update(cancel_requested=True)
            run_log_notice(self.run, message, level="warning")
            if asked and self.run.study:
                activity_record(
                    project=self.run.project,
                    actor=None,
                    verb="stopped by successive halving",
                    target=f"{self.run.name} ({self.run.study.name})",
                    url=self.run.get_absolute_url(),
                )
        return True
