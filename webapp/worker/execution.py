"""Executing a run on this worker: claim it, run the trainer in a child process, stream its events.

The trainer runs as ``python -m trainer train`` in a child process (``torchrun`` for k > 1 GPUs),
so an out-of-memory or CUDA crash kills the child, never the worker. The child appends events to
a JSON-lines file in the run's folder; ``EventPump`` tails it and writes them to the database in
batches. If the database is unreachable the pump keeps its file offset, backs off and retries
while the child keeps training: the file is the buffer, so nothing is lost and memory stays flat.

Cancel is cooperative first (a STOP file the trainer checks between steps), then SIGTERM, then
SIGKILL after a grace period. A warm shutdown of the worker (SIGTERM: a deploy, Ctrl-C of the
demo, ``docker compose stop``) stops the trainer the same way, and the run goes back to its queue
as a new attempt that resumes from the checkpoint the trainer wrote on its way out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, close_old_connections, connection
from django.db.models import Max
from django.utils import timezone

from trainer.config import migrate_config
from trainer.events import Quarantined, read_lines
from trainer.paths import latest_checkpoint, run_folder
from webapp.evaluations.services import evaluations_schedule_final
from webapp.models import MetricPoint, Run, RunLog, RunStatus, Worker
from webapp.selectors import queued_runs
from webapp.services import run_enqueue, run_log_notice
from webapp.worker import child_process, ingest
from webapp.worker.datasets import prepared_team_roots
from webapp.worker.halving import HalvingWatcher
from webapp.worker.run_output import OutputTail
from webapp.worker.system_metrics import SystemSampler
from webapp.worker.wandb_mirror import WandbMirror

log = logging.getLogger(__name__)
DB_ERRORS = (DatabaseError, InterfaceError)
# The database refused the data itself: retrying the same batch can never succeed.
DB_REJECTIONS = (DataError, IntegrityError)
# Set by the worker_shutting_down signal (webapp.tasks): the running attempt stops and is requeued.
SHUTDOWN = threading.Event()
INTERRUPTED = "interrupted"


def run_dir(run_id: int) -> Path:
    return run_folder(settings.PSL_RUNS_DIR, run_id)


def trainer_env(run: Run) -> dict[str, str]:
    """The trainer's environment: the roots of the run's team (its uploads written out first), and
    server paths refused (a run stored before they were refused by the web tier, or written to the
    database by hand)."""
    return child_process.child_env(extra={**prepared_team_roots(run.project.team), "PSL_REFERENCES_ONLY": "1"})


def claim(run_id: int, attempt: int, *, host: str) -> Run | None:
    """Compare-and-set queued → running; a second worker (or a duplicate delivery) gets None."""
    now = timezone.now()
    won = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED, attempt=attempt).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, host=host, error=""
    )
    return Run.objects.get(pk=run_id) if won else None


CLAIM_TRIES = 50


def claim_next(pool: str, *, host: str) -> Run | None:
    """Claim the first queued run of ``pool`` (``selectors.queued_runs``); None when none is left.

    A run message is a ticket for one turn of its pool, not for its own run: the database decides
    whose turn it is, so priorities and reorders apply to messages already waiting. Every queued
    run has sent one message, so there are never fewer tickets than queued runs; a ticket that
    finds the pool empty (its run was taken by an earlier ticket, or cancelled) is spent.
    """
    for _ in range(CLAIM_TRIES):
        head = queued_runs(pool).values_list("pk", "attempt").first()
        if head is None:
            return None
        if (run := claim(head[0], head[1], host=host)) is not None:
            return run
    return None


def trainer_command(run: Run, config_path: Path, events: Path, stop_file: Path, *, resume: bool) -> list[str]:
    args = [
        "-m",
        "trainer",
        "train",
        "--config",
        str(config_path),
        "--events",
        str(events),
        "--stop-file",
        str(stop_file),
        "--no-progress",
    ]
    if resume:
        args.append("--resume")
    if run.gpus > 1:
        # Data parallel over k local GPUs (gloo on CPU-only hosts); only rank 0 writes events.
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={run.gpus}"]
        return [*torchrun, *args]
    return [sys.executable, *args]


# Flush policy of the event pump: a batch goes to the database when it holds FLUSH_ROWS rows (a
# replay catching up writes big batches), or when its oldest event has waited FLUSH_SECONDS and the
# file has nothing more for now (live: a chart is at most ~FLUSH_SECONDS + one poll behind), or
# when it holds FLUSH_BYTES of the file (samples are large; this bounds the worker's memory).
FLUSH_ROWS = 20_000
FLUSH_SECONDS = 0.5
FLUSH_BYTES = 16 << 20
READ_BYTES = 4 << 20


@dataclass
class EventPump:
    """Tails one events file into the database; safe to call again after any failure.

    Events are buffered across trainer steps and written in one transaction per flush (see the
    flush policy above), progress and summary included. ``offset`` only moves past events that
    are committed: a failed flush drops the buffer and the same events are read again later.
    """

    run_id: int
    attempt: int
    path: Path
    offset: int = 0  # everything before it is in the database
    log_seq: int = 0
    done: bool = False
    stop_acknowledged: bool = False
    failures: int = 0
    next_try: float = 0.0
    # Called with each batch once the database has accepted it (the W&B mirror), so it sees
    # every event exactly once even when a batch is retried.
    on_ingested: Callable[[list[dict[str, Any]]], None] | None = None
    quarantined: int = 0  # invalid lines skipped (each one is logged on the run)
    flush_rows: int = FLUSH_ROWS
    flush_seconds: float = FLUSH_SECONDS
    flushes: int = 0  # batches committed (the benchmark and the tests read it)

    def __post_init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self._batch = ingest.Batch(self.run_id)
        self._events: list[dict[str, Any]] = []
        self._read_offset = self.offset  # the file offset after the last buffered event
        self._oldest: float | None = None  # when the oldest buffered event was written (epoch s)
        self._quarantined = 0

    def pump(self, *, drain: bool = False) -> bool:
        """Buffer the complete events available and flush what is due; returns False while the
        database is unreachable. ``drain``: the writer is gone, flush everything now.

        A torn last line (the trainer is still writing it) waits for the next call; with ``drain``
        (the trainer has exited, so nothing will complete it) it is quarantined like any invalid line.
        """
        if time.monotonic() < self.next_try and not drain:
            return False
        while True:
            events, quarantined, new_offset = read_lines(
                self.path, self._read_offset, max_bytes=READ_BYTES, final=drain
            )
            read = bool(events or quarantined)
            if read:
                self._buffer(events, quarantined, new_offset)
            full = self._batch.rows >= self.flush_rows or self._read_offset - self.offset >= FLUSH_BYTES
            if (full or (not read and self._due(drain))) and not self._flush():
                return False
            if not read:
                return True

    def _buffer(self, events: list[dict[str, Any]], quarantined: Sequence[Quarantined], new_offset: int) -> None:
        self._batch.logs.extend(
            ("warning", f"skipped an invalid line of {self.path.name} at byte {q.offset} ({q.reason}): {q.head}")
            for q in quarantined
        )
        self._quarantined += len(quarantined)
        for ev in events:
            self._batch.add(ev)
            if ev["kind"] == "done":
                self.done = True
            elif ev["kind"] == "stopping":
                self.stop_acknowledged = True
        # An event without a time (hand-written files, old trainers) counts as old: due at once.
        written = min((float(ev.get("time", 0.0)) for ev in events), default=0.0) if events else time.time()
        self._oldest = written if self._oldest is None else min(self._oldest, written)
        self._events.extend(events)
        self._read_offset = new_offset

    def _due(self, drain: bool) -> bool:
        if not self._batch:
            return False
        return drain or self._oldest is None or time.time() - self._oldest >= self.flush_seconds

    def _flush(self) -> bool:
        if not self._batch:
            return True
        try:
            ingest.batch_record(self._batch, attempt=self.attempt, log_seq=self.log_seq)
        except DB_REJECTIONS:
            raise  # not an outage: let supervision fail the run instead of retrying forever
        except DB_ERRORS as exc:
            self.failures += 1
            delay = min(30.0, 0.5 * 2 ** min(self.failures, 6))
            self.next_try = time.monotonic() + delay
            log.warning("run %s: database unavailable (%s); retrying in %.1fs", self.run_id, exc, delay)
            _reset_connection()
            self._clear()  # re-read these events from the file on the next try
            return False
        self.failures = 0
        self.flushes += 1
        self.log_seq += len(self._batch.logs)
        self.quarantined += self._quarantined
        self.offset = self._read_offset
        events = self._events
        self._clear()
        if self.on_ingested is not None:
            self.on_ingested(events)
        return True


def _reset_connection() -> None:
    with contextlib.suppress(*DB_ERRORS):
        connection.close()


@dataclass
class Supervisor:
    """Runs one attempt of one run to its end; see the module docstring for the protocol."""

    run: Run
    worker_name: str = ""
    # How often the pump looks at the file; with FLUSH_SECONDS this bounds the live latency (≤ 1 s).
    poll_seconds: float = 0.25

    def __post_init__(self) -> None:
        self.folder = run_dir(self.run.pk)
        self.events = self.folder / f"events-{self.run.attempt}.jsonl"
        self.stop_file = self.folder / "STOP"
        self.output_log = self.folder / f"attempt-{self.run.attempt}.log"
        self.mirror = WandbMirror(self.run, directory=self.folder / "wandb")
        self.halving = HalvingWatcher(self.run)
        self.pump = EventPump(self.run.pk, self.run.attempt, self.events, on_ingested=self._ingested)
        self.output = OutputTail(self.output_log, max_bytes=settings.PSL_LOG_FILE_MAX_BYTES)
        self._output_pending: list[tuple[str, str]] = []
        self._output_seq = 0
        self._next_system = float("inf")  # set once the trainer has started (_start_system)

    def _ingested(self, events: list[dict[str, Any]]) -> None:
        """Committed events go on to the W&B mirror and the study's successive halving."""
        self.mirror.events(events)
        self.halving.events(events)

    def execute(self) -> str:
        try:
            resume = self._prepare()
            self._start_output()  # before the child writes its first byte
            out = self.output_log.open("ab")
        except Exception as exc:  # an unwritable run folder, a full disk, …: the cause goes on the run
            log.exception("run %s: could not prepare the run", self.run.pk)
            return self._fail(f"could not prepare the run on {self.run.host}: {type(exc).__name__}: {exc}")
        with out:
            try:
                child = child_process.spawn(self._command(resume), log=out, env=trainer_env(self.run))
            except OSError as exc:
                return self._fail(f"could not start the trainer on {self.run.host}: {exc}")
            self.mirror.start()
            try:
                self._start_system(child.pid)
                status = self._supervise(child)
            except BaseException as exc:
                # Never leave a trainer running that nobody supervises: this worker would take its
                # next run while the orphan still trains. Kill first, then mark the run.
                child_process.kill_group(child)
                log.exception("run %s: supervision failed; killed the trainer", self.run.pk)
                self._fail(f"the worker's supervision failed, the trainer was stopped: {type(exc).__name__}: {exc}")
                raise
        return self._finish(child.returncode, status)

    def _prepare(self) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stop_file.unlink(missing_ok=True)
        if self.events.exists():  # a redelivered attempt starts its events afresh
            self.events.unlink()
        # A run queued before an upgrade still trains: renamed fields are migrated, unknown ones dropped.
        cfg, notices = migrate_config(self.run.config, drop_unknown=True)
        for notice in notices:
            run_log_notice(self.run, f"stored config migrated: {notice}")
        cfg["output_dir"] = str(self.folder)
        (self.folder / "config.json").write_text(json.dumps(cfg, indent=2))
        if self.run.attempt == 0:
            return False
        self._replay_previous_attempt()
        ckpt = latest_checkpoint(self.folder)
        step = int(ckpt.name.split("_")[1]) if ckpt else 0
        ingest.run_rewind(self.run.pk, to_step=step)
        Run.objects.filter(pk=self.run.pk).update(config={**self.run.config, "_resumed_from_step": step})
        return ckpt is not None

    def _replay_previous_attempt(self) -> None:
        """Ingest what the previous attempt wrote but its worker never sent (it was killed between
        the trainer's write and the next pump), so the steps up to the checkpoint resumed from are
        all there. Idempotent: rows already in the database are skipped."""
        previous = EventPump(self.run.pk, self.run.attempt - 1, self.folder / f"events-{self.run.attempt - 1}.jsonl")
        if not previous.pump(drain=True):
            raise DatabaseError("the database went away while replaying the previous attempt's events")

    def _fail(self, error: str) -> str:
        """Mark this attempt failed with ``error`` (resumable); bounded retries while the database is away."""
        for _ in range(30):
            try:
                close_old_connections()
                self._mine().update(
                    status=RunStatus.FAILED, finished_at=timezone.now(), heartbeat_at=timezone.now(), error=error
                )
                Worker.objects.filter(name=self.worker_name).update(current_run=None)
                break
            except DB_ERRORS:
                _reset_connection()
                time.sleep(1.0)
        self.mirror.finish(str(RunStatus.FAILED))
        return str(RunStatus.FAILED)

    def _command(self, resume: bool) -> list[str]:
        return trainer_command(self.run, self.folder / "config.json", self.events, self.stop_file, resume=resume)

    def _supervise(self, child: subprocess.Popen[bytes]) -> str:
        """Pump events and heartbeats until the child exits; returns 'cancelled' if a cancel arrived,
        'interrupted' if the worker is shutting down, else ''."""
        cancel_at: float | None = None
        reason = ""
        last_beat = 0.0
        term_sent = kill_sent = False
        grace = settings.PSL_CANCEL_GRACE_SECONDS
        while child.poll() is None:
            self.pump.pump()
            self._pump_output()
            if time.monotonic() >= self._next_system:
                self._sample_system()
            # A halving stop was written this very pump: pass it on now, not at the next heartbeat.
            if self.halving.stopped or time.monotonic() - last_beat >= min(2.0, settings.PSL_HEARTBEAT_SECONDS):
                last_beat, self.halving.stopped = time.monotonic(), False
                cancelled = self._beat()
                if cancel_at is None and (cancelled or SHUTDOWN.is_set()):
                    cancel_at, reason = time.monotonic(), "cancelled" if cancelled else INTERRUPTED
                    self.stop_file.touch()
                    log.info(
                        "run %s: %s; asked the trainer to stop",
                        self.run.pk,
                        "cancel requested" if cancelled else "worker shutting down",
                    )
            if cancel_at is not None:
                # A trainer that acknowledged the stop is finishing its current update and will
                # checkpoint; escalate only if it is silent (hung) or takes unreasonably long.
                waited = time.monotonic() - cancel_at
                patience = grace if not self.pump.stop_acknowledged else settings.PSL_CANCEL_MAX_SECONDS
                if waited > patience and not term_sent:
                    child_process.signal_group(child, signal.SIGTERM)
                    term_sent, cancel_at = True, time.monotonic()
                elif term_sent and waited > grace and not kill_sent:
                    child_process.signal_group(child, signal.SIGKILL)
                    kill_sent = True
            time.sleep(self.poll_seconds)
        self._drain()
        return reason

    def _mine(self) -> Any:
        """This attempt's run, also when a sweep marked it lost while the database was unreachable."""
        return Run.objects.filter(
            pk=self.run.pk, attempt=self.run.attempt, host=self.run.host, status__in=[RunStatus.RUNNING, RunStatus.LOST]
        )

    def _beat(self) -> bool:
        """Refresh the run's heartbeat; returns True when a cancel has been requested."""
        try:
            close_old_connections()
            # Reclaims the run if a sweep took it for lost during a database outage: it is alive.
            self._mine().update(status=RunStatus.RUNNING, heartbeat_at=timezone.now(), finished_at=None, error="")
            Worker.objects.filter(name=self.worker_name).update(current_run=self.run.pk, last_seen_at=timezone.now())
            return Run.objects.filter(pk=self.run.pk, cancel_requested=True).exists()
        except DB_ERRORS:
            _reset_connection()
            return False

    def _drain(self) -> None:
        # The child is gone; everything it wrote must reach the database before the final status.
        self._output_pending.extend(self.output.read(final=True))  # its output, to the last byte
        delay = 0.5
        while not (self.pump.pump(drain=True) and self._pump_output()):
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _start_system(self, pid: int) -> None:
        """System samples continue the run's time axis after its earlier attempts (trainer.metrics.SYSTEM_METRICS)."""
        self.system = SystemSampler(pid)
        last = MetricPoint.objects.filter(run_id=self.run.pk, key="system/cpu_percent").aggregate(Max("step"))
        previous = last["step__max"]
        self._system_base = 0 if previous is None else previous + settings.PSL_SYSTEM_METRICS_SECONDS
        self._system_started = time.monotonic()
        self._next_system = self._system_started + 1.0  # the first CPU reading needs an interval behind it

    def _sample_system(self) -> None:
        """One sample of the trainer's processes and the host; best effort: a lost sample is only a gap."""
        now = time.monotonic()
        self._next_system = now + settings.PSL_SYSTEM_METRICS_SECONDS
        second = self._system_base + int(now - self._system_started)
        rows = [(self.run.pk, key, second, value) for key, value in self.system.sample().items()]
        try:
            ingest.metrics_record(rows)
        except DB_REJECTIONS:
            log.warning("run %s: the database refused a system sample", self.run.pk)
        except DB_ERRORS:
            _reset_connection()

    def _start_output(self) -> None:
        """A redelivered attempt appends to its log file: skip what the earlier delivery stored."""
        with contextlib.suppress(OSError):
            self.output.offset = self.output_log.stat().st_size
        lines = RunLog.objects.filter(run_id=self.run.pk, attempt=self.run.attempt, source="output")
        last = lines.order_by("-seq").values_list("seq", flat=True).first()
        self._output_seq = 0 if last is None else last + 1

    def _pump_output(self, *, final: bool = False) -> bool:
        """Store the trainer's new stdout/stderr entries (worker.run_output); False while the database is away."""
        self._output_pending.extend(self.output.read(final=final))
        if not self._output_pending:
            return True
        try:
            ingest.logs_record(self.run.pk, self.run.attempt, self._output_seq, self._output_pending, source="output")
        except DB_REJECTIONS:
            log.warning("run %s: the database refused %d output lines; dropped", self.run.pk, len(self._output_pending))
        except DB_ERRORS:
            _reset_connection()
            # The entries wait in memory for the next try, at most a window's worth.
            del self._output_pending[: -settings.PSL_LOG_MAX_LINES]
            return False
        before = self._output_seq
        self._output_seq += len(self._output_pending)
        self._output_pending = []
        keep = settings.PSL_LOG_MAX_LINES
        if self._output_seq > keep and before // 100 != self._output_seq // 100:  # trim every ~100 lines
            with contextlib.suppress(*DB_ERRORS):
                ingest.logs_trim(self.run.pk, self.run.attempt, source="output", next_seq=self._output_seq, keep=keep)
        return True

    def _finish(self, returncode: int, status: str) -> str:
        if status == INTERRUPTED and self._requeue():
            return INTERRUPTED
        if status == "cancelled":
            final, error = RunStatus.CANCELLED, ""
        elif returncode == 0:
            final, error = RunStatus.SUCCEEDED, ""
        else:
            # The crash as the trainer printed it: its last traceback, else the end of its output.
            traceback = self.output.last_traceback
            cause = traceback or child_process.tail(self.output_log)
            headline = f": {traceback.splitlines()[-1]}" if traceback else ""  # the exception, in view first
            final, error = RunStatus.FAILED, f"trainer exited with code {returncode}{headline}\n\n{cause}"
        while True:
            try:
                close_old_connections()
                self._mine().update(status=final, finished_at=timezone.now(), error=error, heartbeat_at=timezone.now())
                Worker.objects.filter(name=self.worker_name).update(current_run=None)
                break
            except DB_ERRORS:
                _reset_connection()
                time.sleep(1.0)
        self.stop_file.unlink(missing_ok=True)
        self.mirror.finish(str(final))
        if final == RunStatus.SUCCEEDED and settings.PSL_EVAL_AFTER_TRAINING:
            self._schedule_final_evaluation()
        return str(final)

    def _requeue(self) -> bool:
        """Send an interrupted attempt back to its queue as the next attempt (it resumes from its last
        checkpoint). False if that fails: the run then ends as usual and can be resumed by hand."""
        queued = False
        try:
            close_old_connections()
            run = Run.objects.get(pk=self.run.pk)
            if run.total_steps and run.step >= run.total_steps:
                return False  # it trained to the end before it saw the stop: it simply finished
            queued = bool(
                self._mine().update(
                    status=RunStatus.QUEUED,
                    attempt=self.run.attempt + 1,
                    queued_at=timezone.now(),
                    heartbeat_at=None,
                    finished_at=None,
                    host="",
                    error="",
                )
            )
            if not queued:
                return False
            Worker.objects.filter(name=self.worker_name).update(current_run=None)
            run.attempt = self.run.attempt + 1  # what the update wrote; the message names this attempt
            run_enqueue(run=run)  # no transaction is open here, so it is sent at once
        except Exception as exc:
            log.exception("run %s: could not requeue the interrupted attempt", self.run.pk)
            if not queued:
                return False
            # Queued without a message, no worker would ever take it: leave it resumable by hand.
            with contextlib.suppress(*DB_ERRORS):
                Run.objects.filter(pk=self.run.pk, status=RunStatus.QUEUED).update(
                    status=RunStatus.LOST,
                    finished_at=timezone.now(),
                    error=f"the worker shut down and could not requeue the run ({exc}); resume it",
                )
        else:
            log.info("run %s: interrupted by the worker's shutdown; requeued as attempt %s", run.pk, run.attempt)
        self.stop_file.unlink(missing_ok=True)
        self.mirror.finish("interrupted")
        return True

    def _schedule_final_evaluation(self) -> None:
        """Queue the end-of-training evaluation; best effort: it never changes the run's outcome."""
        try:
            evaluations_schedule_final(Run.objects.get(pk=self.run.pk))
        except Exception:
            log.exception("run %s: could not schedule its final evaluation", self.run.pk)


# --- workers ---------------------------------------------------------------------------------------


_identity: dict[str, str] = {}


def set_worker_identity(name: str) -> None:
    _identity["name"] = name


def worker_identity() -> str:
    """The Celery node name (e.g. ``gpu-a100@host3``) once the worker is up."""
    return _identity.get("name") or os.environ.get("PSL_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def worker_heartbeat(*, name: str, queues: list[str], current_run_id: int | None = None) -> None:
    """Advertise this worker (host, GPUs, free memory, current run) for the Workers page."""
    import psutil

    Worker.objects.update_or_create(
        name=name,
        defaults={
            "hostname": socket.gethostname(),
            "queues": queues,
            "gpus": gpu_inventory(),
            "memory_free_mb": int(psutil.virtual_memory().available / 2**20),
            "last_seen_at": timezone.now(),
            "current_run_id": current_run_id,
        },
    )


def gpu_inventory() -> list[dict[str, Any]]:
    """GPUs visible to this worker (respects CUDA_VISIBLE_DEVICES) with their free memory."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=index,name,memory.total,memory.free,utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    allowed = {v.strip() for v in visible.split(",")} if visible else None
    gpus = []
    for line in out.strip().splitlines():
        idx, name, total, free, util = [x.strip() for x in line.split(",")]
        if allowed is None or idx in allowed:
            gpus.append(
                {
                    "index": int(idx),
                    "name": name,
                    "memory_total_mb": int(total),
                    "memory_free_mb": int(free),
                    "utilization": int(util),
                }
            )
    return gpus


def sweep_lost_runs(*, exclude: int | None = None) -> list[int]:
    """Mark running runs whose heartbeat went stale as lost (their data is kept).

    ``exclude`` is the run this worker is executing itself: it knows that one is alive.
    """
    from datetime import timedelta

    stale_runs = Run.objects.stale(older_than=timedelta(seconds=settings.PSL_LOST_AFTER_SECONDS))
    if exclude is not None:
        stale_runs = stale_runs.exclude(pk=exclude)
    stale = list(stale_runs.values_list("pk", flat=True))
    lost = []
    for pk in stale:
        if Run.objects.filter(pk=pk, status=RunStatus.RUNNING).update(
            status=RunStatus.LOST,
            finished_at=timezone.now(),
            error="the worker stopped sending heartbeats (killed, crashed or lost its network)",
        ):
            lost.append(pk)
    return lost
