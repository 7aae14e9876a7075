"""The worker side of evaluations: claim the queued rows, run the evaluator once for all of them
as a child process (``webapp.worker.child_process``: an out-of-memory crash kills the child, never the
worker; a timeout kills its process group), then store each report or the reason it failed.

The claim records the worker on the rows and the rows carry its heartbeat while the evaluator
runs, so a worker that is SIGKILLed mid-evaluation (its child dies with it) leaves them to the
lost-work sweep (``services.evaluations_sweep_lost``), never ``running`` forever.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from trainer.choices import MODES
from trainer.config import EVAL_SAMPLING
from trainer.data.benchmarks import BENCHMARK_NAMES
from webapp.evaluations.services import (
    evaluation_store,
    evaluations_beat,
    evaluations_claim,
    evaluations_fail,
    model_for_step,
)
from webapp.models import Evaluation, Run
from webapp.services import ServiceError
from webapp.worker import child_process
from webapp.worker.datasets import prepared_team_roots
from webapp.worker.execution import run_dir

log = logging.getLogger(__name__)


def evaluations_execute(evaluation_ids: Sequence[int], *, host: str = "") -> str:
    """Claim the queued rows, run the evaluator child process once for all of them, store the results."""
    claimed = evaluations_claim(evaluation_ids, host=host)
    if not claimed:
        return "skipped"
    evals = list(Evaluation.objects.filter(pk__in=claimed).select_related("run").order_by("pk"))
    try:
        return _execute(evals, host=host)
    except Exception as exc:  # never leave rows "running" behind a crash of this code
        log.exception("evaluations %s failed", claimed)
        evaluations_fail(claimed, f"{type(exc).__name__}: {exc}")
        return "failed"


def _execute(evals: list[Evaluation], *, host: str) -> str:
    run, step, opts = evals[0].run, evals[0].step, evals[0].settings
    try:
        model = model_for_step(run, step)
    except ServiceError as exc:
        evaluations_fail([ev.pk for ev in evals], str(exc))
        return "failed"
    folder = run_dir(run.pk) / "evaluations" / f"step_{step:06d}-{evals[0].pk}"
    folder.mkdir(parents=True, exist_ok=True)
    out, log_path = folder / "results.json", folder / "evaluate.log"
    out.unlink(missing_ok=True)
    benchmarks = sorted({ev.benchmark for ev in evals}, key=BENCHMARK_NAMES.index)
    modes = [m for m in MODES if any(ev.mode == m for ev in evals)]
    cmd = evaluation_command(model, benchmarks, modes, opts, out)
    Evaluation.objects.filter(pk__in=[ev.pk for ev in evals]).update(
        settings={**opts, "model": model, "host": host, "folder": str(folder)}
    )
    code = child_process.run_to_end(
        cmd,
        log_path,
        env=evaluator_env(judge=bool(opts.get("judge")), run=run),
        timeout=float(settings.PSL_EVAL_TIMEOUT_SECONDS),
        timeout_setting="PSL_EVAL_TIMEOUT_SECONDS",
        beat=lambda: evaluations_beat([ev.pk for ev in evals], host=host),
        beat_seconds=min(2.0, settings.PSL_HEARTBEAT_SECONDS),  # as often as a run's
    )
    doc = json.loads(out.read_text()) if out.is_file() else {"benchmarks": {}}
    failed, log_tail = 0, child_process.tail(log_path)
    for ev in evals:
        report = doc["benchmarks"].get(ev.benchmark)
        if report and not report.get("error") and ev.mode in report.get("modes", {}):
            evaluation_store(ev, report["modes"][ev.mode], title=report.get("title", ev.benchmark))
            continue
        failed += 1
        error = (report or {}).get("error") or f"the evaluator exited with code {code}\n\n{log_tail}"
        evaluations_fail([ev.pk], error)
    return "failed" if failed == len(evals) else "succeeded"


def evaluation_command(
    model: str, benchmarks: Sequence[str], modes: Sequence[str], opts: dict[str, Any], out: Path
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "trainer.evaluation.evaluate",
        "--model",
        model,
        "--benchmark",
        ",".join(benchmarks),
        "--modes",
        ",".join(modes),
        "--k",
        str(opts.get("k", EVAL_SAMPLING.k)),
        "--temperature",
        str(opts.get("temperature", EVAL_SAMPLING.temperature)),
        "--top-k",
        str(opts.get("top_k", EVAL_SAMPLING.top_k)),
        "--top-p",
        str(opts.get("top_p", EVAL_SAMPLING.top_p)),
        "--max-new-tokens",
        str(opts.get("max_new_tokens", EVAL_SAMPLING.max_new_tokens)),
        "--data-dir",
        str(settings.PSL_DATA_DIR),
        "--out",
        str(out),
    ]
    if opts.get("limit"):
        cmd += ["--limit", str(opts["limit"])]
    if not opts.get("judge"):
        cmd.append("--no-judge")
    return cmd


def evaluator_env(*, judge: bool, run: Run | None = None) -> dict[str, str]:
    """The evaluator's environment: the judge's settings only when it is asked for (the key
    travels in the environment, never on the command line), and the roots of the run's team
    (its base model may be a ``local:`` or ``run:`` reference)."""
    extra: dict[str, str] = dict(prepared_team_roots(run.project.team)) if run is not None else {}
    extra |= (
        {
            "JUDGE_API_URL": settings.JUDGE_API_URL,
            "JUDGE_API_KEY": settings.JUDGE_API_KEY or "",
            "JUDGE_MODEL": settings.JUDGE_MODEL,
        }
        if judge
        else {}
    )
    return child_process.child_env(drop_prefixes=("JUDGE_",), extra=extra)
