"""The trainer's stdout/stderr reaches the run's log on a real worker: step lines while it trains,
a crash's traceback as one error entry (and as the run's error), bounded per attempt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from tests.webapp.test_execution import _config, _status, _wait
from tests.workers import WorkerProcess
from webapp import selectors
from webapp.models import MetricPoint, RunLog, RunStatus
from webapp.services import run_create
from webapp.worker import ingest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def broken_dataset(name: str) -> Path:
    """A dataset in the data folder (where the worker resolves data:<name>) whose second row is not JSON."""
    path = Path(settings.PSL_DATA_DIR) / f"broken-{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"question": "1 + 1?", "answer": "2"}\nnot json at all\n')
    return path


def test_a_crashing_trainer_leaves_its_traceback_in_the_log_and_the_error(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any, tmp_path: Path
) -> None:
    broken = broken_dataset(tmp_path.name)
    run = run_create(project=project, user=alice, config=_config(steps=2, task=f"data:{broken.name}"))
    worker = start_worker("w-logs")

    _wait(lambda: _status(run) == RunStatus.FAILED, timeout=180, what="the run to fail", worker=worker)

    errors = list(selectors.run_logs(run, level="error").filter(source="output"))
    tracebacks = [e.message for e in errors if e.message.startswith("Traceback (most recent call last):")]
    assert len(tracebacks) == 1, [e.message[:80] for e in errors]
    assert tracebacks[0].rstrip().endswith("row 2: invalid JSON (Expecting value)")
    assert '  File "' in tracebacks[0]  # the frames, not only the last line
    run.refresh_from_db()
    assert "trainer exited with code 1" in run.error and tracebacks[0] in run.error
    assert not selectors.run_logs(run, level="error").filter(source="output", level="info").exists()


def test_a_training_run_logs_one_line_per_step_from_its_output(
    start_worker: Callable[[str], WorkerProcess], project: Any, alice: Any
) -> None:
    run = run_create(project=project, user=alice, config=_config(steps=3))
    worker = start_worker("w-steps")

    _wait(lambda: _status(run) == RunStatus.SUCCEEDED, timeout=240, what="the run to succeed", worker=worker)

    output = [line.message for line in selectors.run_logs(run).filter(source="output")]
    steps = [m for m in output if m.startswith("step ")]
    assert [m.split()[1] for m in steps] == ["1/3", "2/3", "3/3"], output
    assert " s) " in steps[0] and "reward=" in steps[0]
    # The trainer's own log events are there too, in the order they were stored.
    sources = [line.source for line in selectors.run_logs(run)]
    assert {"trainer", "output"} <= set(sources)
    # The worker sampled the trainer every PSL_SYSTEM_METRICS_SECONDS (1 s in the tests) on a seconds axis.
    cpu = list(MetricPoint.objects.filter(run=run, key="system/cpu_percent").values_list("step", "value"))
    rss = list(MetricPoint.objects.filter(run=run, key="system/rss_mb").values_list("value", flat=True))
    assert len(cpu) >= 3 and [s for s, _ in cpu] == sorted({s for s, _ in cpu}), cpu
    assert max(v for _, v in cpu) > 20 and min(rss) > 50  # a trainer with a model loaded, busy


@override_settings(PSL_LOG_MAX_LINES=10)
def test_the_log_keeps_a_rotating_window_of_output_lines_per_attempt(make_run: Any) -> None:
    run = make_run(status="running")
    for seq in range(0, 300, 30):
        ingest.logs_record(run.pk, 0, seq, [("info", f"line {seq + i}") for i in range(30)], source="output")
        ingest.logs_record(run.pk, 0, seq // 30, [("info", f"event {seq}")])
        ingest.logs_trim(run.pk, 0, source="output", next_seq=seq + 30, keep=10)

    kept = [line.message for line in selectors.run_logs(run).filter(source="output")]
    assert kept == [f"line {i}" for i in range(290, 300)]
    assert selectors.dropped_output_lines(run) == {0: 290}  # the download says so
    assert RunLog.objects.filter(run=run, source="trainer").count() == 10  # the trainer's events are not trimmed


def test_a_redelivered_attempt_continues_its_output_lines_after_the_stored_ones(make_run: Any, tmp_path: Path) -> None:
    from webapp.worker.execution import Supervisor

    with override_settings(PSL_RUNS_DIR=tmp_path):
        run = make_run(status="running")
        supervisor = Supervisor(run)
        supervisor.folder.mkdir(parents=True)
        supervisor.output_log.write_text("already stored\n")
        ingest.logs_record(run.pk, 0, 0, [("info", "already stored")], source="output")

        supervisor._start_output()

        assert (supervisor.output.offset, supervisor._output_seq) == (len("already stored\n"), 1)
