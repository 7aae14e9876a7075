"""Mirror a run to Weights & Biases: config, the same metrics, and samples as incremental tables.

The mirror runs in the worker beside the database ingestion and sees each event exactly once
(only after the database accepted it). Every W&B call is guarded: a W&B failure is logged on
the run and switches the mirror off, and never fails the training run. Without an API key W&B
writes an offline run folder (``wandb sync`` uploads it later). The W&B run id is stored on the
Run so that a resumed attempt continues the same W&B run.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, cast

from django.conf import settings

from trainer.config import config_values
from webapp.models import Run, RunLog

log = logging.getLogger(__name__)
SAMPLE_COLUMNS: list[str | int] = [
    "step",
    "question_id",
    "mode",
    "index",
    "question",
    "response",
    "reward",
    "num_tokens",
    "mean_entropy",
]


class WandbMirror:
    def __init__(self, run: Run, *, directory: Path) -> None:
        self.run = run
        self.directory = directory
        self.wb: Any = None
        self.enabled = run.wandb_enabled and settings.WANDB_MODE != "disabled"

    def start(self) -> None:
        if not self.enabled:
            return
        try:
            import wandb

            run_id = self.run.wandb_run_id or secrets.token_hex(4)  # W&B ids: short lowercase alphanumerics
            if not self.run.wandb_run_id:
                Run.objects.filter(pk=self.run.pk).update(wandb_run_id=run_id)
                self.run.wandb_run_id = run_id
            self.directory.mkdir(parents=True, exist_ok=True)
            self.wb = wandb.init(
                id=run_id,
                resume="allow",
                project=settings.WANDB_PROJECT,
                entity=settings.WANDB_ENTITY or None,
                name=self.run.name,
                config=config_values(self.run.config),
                dir=str(self.directory),
                mode=cast(Any, settings.WANDB_MODE),
                reinit="create_new",
                tags=[self.run.algorithm, self.run.model_name],
                settings=wandb.Settings(silent=True),
            )
            self.wb.define_metric("*", step_metric="trainer/step")
        except Exception as exc:
            self._fail("start", exc)

    def events(self, events: list[dict[str, Any]]) -> None:
        if self.wb is None:
            return
        try:
            for ev in events:
                if ev["kind"] == "metrics":
                    self.wb.log({**ev["values"], "trainer/step": ev["step"]})
                elif ev["kind"] == "samples":
                    self._log_samples(ev["step"], ev["samples"])
        except Exception as exc:
            self._fail("log", exc)

    def _log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        import wandb

        # One table per step holding only that step's rows: nothing is re-uploaded later.
        table = wandb.Table(columns=SAMPLE_COLUMNS)
        for s in samples:
            table.add_data(
                step,
                s["question_id"],
                s["mode"],
                s["index"],
                s["question"],
                s["response"],
                s["reward"],
                s["num_tokens"],
                s.get("mean_entropy"),
            )
        self.wb.log({"samples": table, "trainer/step": step})

    def finish(self, status: str) -> None:
        if self.wb is None:
            return
        try:
            self.wb.summary["status"] = status
            self.wb.finish(exit_code=0 if status == "succeeded" else 1)
        except Exception as exc:
            self._fail("finish", exc)
        self.wb = None

    def _fail(self, stage: str, exc: Exception) -> None:
        log.warning("run %s: W&B %s failed; mirroring switched off", self.run.pk, stage, exc_info=True)
        self.wb = None
        try:
            seq = RunLog.objects.filter(run=self.run, attempt=self.run.attempt).count() + 1_000_000
            RunLog.objects.create(
                run=self.run,
                attempt=self.run.attempt,
                seq=seq,
                level="warning",
                message=f"W&B mirror {stage} failed, the run continues without it: {exc}",
            )
        except Exception:
            log.warning("could not record the W&B failure", exc_info=True)
