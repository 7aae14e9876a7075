"""The child-process helpers the trainer and the evaluator share: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from webapp.worker import child_process

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_it_kills_the_whole_process_group_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # The child starts a grandchild (as torchrun starts its ranks) and waits for it.
    cmd = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    log = tmp_path / "child.log"
    code = child_process.run_to_end(cmd, log, env=child_process.child_env(), timeout=1, timeout_setting="PSL_X")
    assert code == -signal.SIGKILL
    assert "killed after 1 s (PSL_X)" in log.read_text()
    assert _wait_gone(int(pid_file.read_text()))


def test_it_returns_the_exit_status_and_keeps_the_output_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    cmd = [sys.executable, "-c", "import sys; print('hello'); sys.exit(3)"]
    assert child_process.run_to_end(cmd, log, env=child_process.child_env(), timeout=30, timeout_setting="T") == 3
    assert log.read_text().strip() == "hello"


def test_a_child_dies_with_its_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    worker = textwrap.dedent(
        f"""
        import django, os, sys, time
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings_test")
        django.setup()
        from webapp.worker import child_process
        with open(os.devnull, "ab") as log:
            child = child_process.spawn(["sleep", "60"], log=log, env=child_process.child_env())
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", worker], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, "the worker process died before it started its child"
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        assert _alive(child_pid)
        proc.kill()  # SIGKILL: the worker gets no chance to clean up
        proc.wait()
        assert _wait_gone(child_pid), "the child outlived its SIGKILLed worker"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_environment_drops_the_named_variables_and_adds_the_extra_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_API_KEY", "secret")
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = child_process.child_env(drop_prefixes=("JUDGE_",), extra={"JUDGE_MODEL": "m"})
    assert "JUDGE_API_KEY" not in env and env["JUDGE_MODEL"] == "m" and env["KEEP_ME"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a host that may download keeps its choice
    assert child_process.child_env()["HF_HUB_OFFLINE"] == "0"


def test_the_tail_is_the_last_lines_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert child_process.tail(log, lines=2) == "line 98\nline 99"
    assert child_process.tail(tmp_path / "missing.log") == ""
