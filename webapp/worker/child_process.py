"""Child processes of a worker: the trainer (``webapp.worker.execution``) and the evaluator
(``webapp.evaluations.runner``) both run through these helpers.

A worker never runs torch in its own process: an out-of-memory or CUDA crash must kill the child,
not the worker. Each child gets its own process group (so a signal reaches torchrun and all of its
ranks) and dies with its worker (so a SIGKILLed worker leaves no orphan training on that nobody
ingests); its stdout and stderr go to one log file whose tail becomes the error of a failed run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

from django.conf import settings

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn`` of every child: SIGKILL when the worker dies, and a process group of its own."""
    with contextlib.suppress(OSError):  # not Linux: the child merely outlives a killed worker
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


def child_env(*, drop_prefixes: Iterable[str] = (), extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment for a child: offline hub by default, unbuffered output (the log is
    read while the child runs), without the variables named by ``drop_prefixes``, plus ``extra``."""
    prefixes = tuple(drop_prefixes)
    env = {k: v for k, v in os.environ.items() if not (prefixes and k.startswith(prefixes))}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(cmd: list[str], *, log: IO[bytes], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the project folder with its output appended to ``log``."""
    return subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=settings.BASE_DIR,
        env=dict(env),
        preexec_fn=die_with_parent,
    )


def run_to_end(
    cmd: list[str],
    log_path: Path,
    *,
    env: Mapping[str, str],
    timeout: float,
    timeout_setting: str,
    beat: Callable[[], None] | None = None,
    beat_seconds: float = 2.0,
) -> int:
    """Run ``cmd`` to its end with its output in ``log_path``, calling ``beat`` every
    ``beat_seconds`` while it runs; past ``timeout`` seconds its whole process group is killed, the
    log names ``timeout_setting`` (what to raise) and the exit status is -SIGKILL. A ``beat`` that
    raises kills the child first: nobody would wait for it any more."""
    with log_path.open("ab") as log:
        child = spawn(cmd, log=log, env=env)
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    return child.wait(timeout=max(0.0, min(left, beat_seconds) if beat else left))
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        break
                if beat is not None:
                    beat()
        except BaseException:
            kill_group(child)
            raise
        kill_group(child, reap_seconds=None)
        log.write(f"\nkilled after {timeout:.0f} s ({timeout_setting})\n".encode())
        return -signal.SIGKILL


def signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the child's process group (torchrun and its ranks included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


def kill_group(child: subprocess.Popen[bytes], *, reap_seconds: float | None = 30.0) -> None:
    """SIGKILL the child's whole process group (torchrun and its ranks too) and reap the child
    (``reap_seconds=None``: wait as long as it takes)."""
    signal_group(child, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=reap_seconds)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a child's log ('' when it has none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
