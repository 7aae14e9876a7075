"""Evaluations of a run's checkpoints: create, enqueue, execute in a child process, store; and the
reads behind the evaluations page.

One Evaluation row is one (run, checkpoint step, benchmark, mode). Rows created together share
their settings and go to the worker as one task, which runs ``python -m trainer.evaluation.evaluate`` once
for all of them as a **child process** (an out-of-memory crash kills the child, never the
worker), then stores each (benchmark, mode) report: aggregate metrics in ``Evaluation.metrics``
(``accuracy`` as a fraction, ``accuracy_ci``, ``entropy_bits``, ``pass_at_k``, ``unique_correct``,
``kl_to_other``, creative diversity and judge scores; see ``trainer.evaluation.evaluate``) and one EvalResult
per sample (score 1/0, creative samples 0 with ``metrics["graded"] = False``). The study table
(``webapp.reports``) reads exactly these: ``accuracy``, ``entropy_bits`` and per-question
correctness (score > 0.5) of the EvalResult rows.

Step 0 is the untrained base model (``run.model_name``); any other step must be a checkpoint of
the run that is still on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Sum, When
from django.utils import timezone

from trainer.choices import MODES
from trainer.data.benchmarks import BENCHMARK_NAMES, BENCHMARKS, benchmark_problem, benchmark_title
from trainer.evaluation.diversity import pass_at_k_curve
from webapp.execution import run_dir
from webapp.models import Checkpoint, EvalResult, EvalStatus, Evaluation, Run, RunStatus
from webapp.services import ServiceError, activity_record

log = logging.getLogger(__name__)

ACTIVE = (EvalStatus.QUEUED, EvalStatus.RUNNING)
MAX_K = 64
# What a run gets when it succeeds (evaluations_schedule_final); settings.PSL_EVAL_FINAL overrides keys.
FINAL_DEFAULTS: dict[str, Any] = {
    "k": 4,
    "limit": 64,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
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
    k: int = 8
    limit: int | None = None
    max_new_tokens: int = 512
    temperature: float = 0.6
    top_k: int = 20
    top_p: float = 0.95
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


# --- checkpoints ---------------------------------------------------------------------------------------


def checkpoint_steps(run: Run) -> list[int]:
    """Steps that can be evaluated: 0 (the base model) and every checkpoint still on disk."""
    steps = [c.step for c in run.checkpoints.order_by("step") if _is_model_folder(c.path)]
    return [0, *steps]


def _is_model_folder(path: str) -> bool:
    return bool(path) and (Path(path) / "config.json").is_file()


def model_for_step(run: Run, step: int) -> str:
    """What the evaluator loads: the base model at step 0, else the checkpoint folder."""
    if step == 0:
        return run.model_name
    ckpt = Checkpoint.objects.filter(run=run, step=step).first()
    if ckpt is None:
        raise ServiceError(f"run {run.pk} has no checkpoint at step {step}")
    if not _is_model_folder(ckpt.path):
        raise ServiceError(
            f"the checkpoint of step {step} is no longer on disk ({ckpt.path}); "
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
    from webapp.tasks import evaluate_run_checkpoint

    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    queues: dict[tuple[int, int], str] = {}
    for ev in evaluations:
        groups[(ev.run_id, ev.step)].append(ev.pk)
        queues[(ev.run_id, ev.step)] = ev.run.queue

    def send() -> None:
        for key, ids in groups.items():
            evaluate_run_checkpoint.apply_async(args=[ids], queue=queues[key])

    transaction.on_commit(send)


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
    names = cfg["benchmarks"] if cfg["benchmarks"] is not None else ([task] if task in BENCHMARKS else [])
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
            max_new_tokens=int(run.config.get("max_new_tokens", 512)),
            temperature=cfg["temperature"],
            top_k=cfg["top_k"],
            top_p=cfg["top_p"],
        )
        try:
            created += evaluations_create(run=run, request=request, user=user)
        except ServiceError as exc:  # e.g. one already queued by hand: the final evaluation is best effort
            log.info("run %s: final evaluation at step %s not scheduled: %s", run.pk, step, exc)
    return created


# --- execute (in the worker) ----------------------------------------------------------------------------


def evaluations_execute(evaluation_ids: Sequence[int], *, host: str = "") -> str:
    """Claim the queued rows, run the evaluator child process once for all of them, store the results."""
    claimed = [
        pk
        for pk in evaluation_ids
        if Evaluation.objects.filter(pk=pk, status=EvalStatus.QUEUED).update(status=EvalStatus.RUNNING)
    ]
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
    code = run_child(cmd, log_path, env=_child_env(bool(opts.get("judge"))))
    doc = json.loads(out.read_text()) if out.is_file() else {"benchmarks": {}}
    failed = 0
    for ev in evals:
        report = doc["benchmarks"].get(ev.benchmark)
        if report and not report.get("error") and ev.mode in report.get("modes", {}):
            evaluation_store(ev, report["modes"][ev.mode], title=report.get("title", ev.benchmark))
            continue
        failed += 1
        error = (report or {}).get("error") or f"the evaluator exited with code {code}\n\n{_tail(log_path)}"
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
        str(opts.get("k", 8)),
        "--temperature",
        str(opts.get("temperature", 0.6)),
        "--top-k",
        str(opts.get("top_k", 20)),
        "--top-p",
        str(opts.get("top_p", 0.95)),
        "--max-new-tokens",
        str(opts.get("max_new_tokens", 512)),
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


def _child_env(judge: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUDGE_")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if judge:  # the key travels in the environment, never on the command line
        env.update(
            JUDGE_API_URL=settings.JUDGE_API_URL,
            JUDGE_API_KEY=settings.JUDGE_API_KEY or "",
            JUDGE_MODEL=settings.JUDGE_MODEL,
        )
    return env


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A SIGKILLed worker must not leave an orphan evaluator behind.
    with contextlib.suppress(OSError):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()


def run_child(cmd: list[str], log_path: Path, *, env: dict[str, str], timeout: float | None = None) -> int:
    """Run the evaluator with its output in ``log_path``; a timeout kills its process group."""
    timeout = timeout or float(settings.PSL_EVAL_TIMEOUT_SECONDS)
    with log_path.open("ab") as fh:
        child = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR, env=env, preexec_fn=_child_setup
        )
        try:
            return child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            fh.write(f"\nkilled after {timeout:.0f} s (PSL_EVAL_TIMEOUT_SECONDS)\n".encode())
            return -signal.SIGKILL


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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


# --- reads for the evaluations page ---------------------------------------------------------------------


def question_counts(evaluation_ids: Sequence[int]) -> dict[int, dict[str, tuple[int, int]]]:
    """Per evaluation, per question: (samples, correct samples) in one GROUP BY."""
    correct = Sum(Case(When(score__gt=0.5, then=1), default=0, output_field=IntegerField()))
    rows = (
        EvalResult.objects.filter(evaluation_id__in=list(evaluation_ids))
        .values("evaluation_id", "question_id")
        .annotate(n=Count("id"), c=correct)
        .order_by()
    )
    out: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
    for row in rows:
        out[row["evaluation_id"]][row["question_id"]] = (int(row["n"]), int(row["c"] or 0))
    return out


def _num(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        scaled = scale * value
        return f"{0.0 if round(scaled, digits) == 0 else scaled:.{digits}f}"  # never "-0.00" (float noise)
    return "–"


@dataclass
class EvalRow:
    """One evaluation in the per-run table, with its numbers formatted for display."""

    evaluation: Evaluation

    @property
    def m(self) -> dict[str, Any]:
        return self.evaluation.metrics or {}

    @property
    def acc(self) -> str:
        return _num(self.m.get("accuracy"), 100)

    @property
    def ci(self) -> str:
        ci = self.m.get("accuracy_ci")
        return f"[{_num(ci[0], 100, 1)}, {_num(ci[1], 100, 1)}]" if ci else ""

    @property
    def ent(self) -> str:
        return _num(self.m.get("entropy_bits"), digits=3)

    @property
    def length(self) -> str:
        return _num(self.m.get("length"), digits=1)

    @property
    def pass1(self) -> str:
        return _num((self.m.get("pass_at_k") or {}).get("1"), 100)

    @property
    def k(self) -> int:
        return int(self.evaluation.settings.get("k") or 0)

    @property
    def passk(self) -> str:
        curve = self.m.get("pass_at_k") or {}
        return _num(curve[max(curve, key=int)], 100) if curve else "–"

    @property
    def unique(self) -> str:
        return _num(self.m.get("unique_correct"))

    @property
    def kl(self) -> str:
        return _num(self.m.get("kl_to_other"), digits=4)

    @property
    def creative(self) -> dict[str, str]:
        judge = self.m.get("judge") or {}
        return {
            "div_ngram": _num(self.m.get("div_ngram")),
            "div_bleu": _num(self.m.get("div_bleu")),
            "embedding_diversity": _num(self.m.get("embedding_diversity")),
            "judge": _num(judge.get("overall"), digits=1),
            "judge_errors": str(judge.get("errors", "")) if judge.get("errors") else "",
        }


@dataclass
class BenchmarkTable:
    benchmark: str
    title: str
    graded: bool
    rows: list[EvalRow] = field(default_factory=list)


def evaluation_tables(evaluations: Sequence[Evaluation]) -> list[BenchmarkTable]:
    """One table per benchmark (registry order), rows by step then mode."""
    tables: dict[str, BenchmarkTable] = {}
    for ev in sorted(evaluations, key=lambda e: (e.step, MODES.index(e.mode) if e.mode in MODES else 9)):
        spec = BENCHMARKS.get(ev.benchmark)
        table = tables.setdefault(
            ev.benchmark, BenchmarkTable(ev.benchmark, benchmark_title(ev.benchmark), spec.graded if spec else True)
        )
        table.rows.append(EvalRow(ev))
    order = {name: i for i, name in enumerate(BENCHMARK_NAMES)}
    return sorted(tables.values(), key=lambda t: (order.get(t.benchmark, len(order)), t.benchmark))


@dataclass
class PassAtKChart:
    benchmark: str
    title: str
    step: int
    curves: dict[str, dict[str, list[float]]]  # mode -> {"k": [...], "pass": [...] (percent)}
    links: dict[str, int] = field(default_factory=dict)  # mode -> evaluation id


def pass_at_k_charts(evaluations: Sequence[Evaluation]) -> list[PassAtKChart]:
    """Best-of-k comparison: the unbiased pass@k curve (k = 1..K) of each mode, per benchmark and step."""
    done = [ev for ev in evaluations if ev.status == EvalStatus.SUCCEEDED and (ev.metrics or {}).get("graded", True)]
    counts = question_counts([ev.pk for ev in done])
    charts: dict[tuple[str, int], PassAtKChart] = {}
    for ev in done:
        per_q = list(counts.get(ev.pk, {}).values())
        if not per_q:
            continue
        curve = pass_at_k_curve(per_q)
        chart = charts.setdefault(
            (ev.benchmark, ev.step), PassAtKChart(ev.benchmark, benchmark_title(ev.benchmark), ev.step, {})
        )
        chart.curves[ev.mode] = {"k": [float(k) for k in curve], "pass": [100 * v for v in curve.values()]}
        chart.links[ev.mode] = ev.pk
    return sorted(charts.values(), key=lambda c: (c.benchmark, c.step))


@dataclass
class OneModeQuestion:
    benchmark: str
    step: int
    question_id: str
    solved_by: str  # the mode that found a correct answer
    counts: dict[str, tuple[int, int]]  # mode -> (samples, correct)
    evaluations: dict[str, int]  # mode -> evaluation id


def one_mode_only(
    evaluations: Sequence[Evaluation], *, limit: int = 200
) -> tuple[list[OneModeQuestion], dict[str, int]]:
    """Questions where exactly one mode found a correct answer (per benchmark and step): the first
    ``limit`` of them and how many each mode found alone in total."""
    pairs: dict[tuple[str, int], dict[str, Evaluation]] = defaultdict(dict)
    for ev in evaluations:
        if ev.status == EvalStatus.SUCCEEDED and (ev.metrics or {}).get("graded", True):
            pairs[(ev.benchmark, ev.step)][ev.mode] = ev
    both = {key: p for key, p in pairs.items() if set(MODES) <= set(p)}
    counts = question_counts([ev.pk for p in both.values() for ev in p.values()])
    found: list[OneModeQuestion] = []
    for (bench, step), p in sorted(both.items()):
        cn, ch = counts.get(p["normal"].pk, {}), counts.get(p["he"].pk, {})
        for qid in sorted(set(cn) & set(ch)):
            solved = [m for m, c in (("normal", cn[qid]), ("he", ch[qid])) if c[1] > 0]
            if len(solved) == 1:
                found.append(
                    OneModeQuestion(
                        bench,
                        step,
                        qid,
                        solved[0],
                        {"normal": cn[qid], "he": ch[qid]},
                        {m: ev.pk for m, ev in p.items()},
                    )
                )
    return found[:limit], {mode: sum(1 for q in found if q.solved_by == mode) for mode in MODES}
