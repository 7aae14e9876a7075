"""What the training loop reports, and how it reaches a consumer.

The loop calls ``Callbacks``; ``JsonlEventWriter`` turns them into an append-only JSON-lines file
(one event per line: metrics, samples, progress, checkpoint, log, done). The web app's worker
runs the trainer in a child process and tails that file, so a crash of either side loses
nothing that was written, and replaying the file is idempotent.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any


@dataclass
class Sample:
    """One generated response as shown in the side-by-side view."""

    question_id: str
    question: str
    answer: str
    mode: str  # which mode generated it: normal | he
    context: str  # the context it is shown under (its own mode for generated samples)
    index: int  # rollout index within (question, mode)
    prompt: str
    response: str
    reward: float
    advantage: float | None
    num_tokens: int
    mean_entropy: float | None
    surprisal: list[float] = field(default_factory=list)  # per-token −log π (nats), own context
    tokens: list[str] = field(default_factory=list)  # per-token text pieces, for the heatmap

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


@dataclass
class Callbacks:
    on_metrics: Callable[[int, dict[str, float]], None] = _noop
    on_samples: Callable[[int, list[Sample]], None] = _noop
    on_checkpoint: Callable[[int, str], None] = _noop
    on_progress: Callable[[int, int], None] = _noop
    on_log: Callable[[str, str], None] = _noop  # (level, message)
    should_stop: Callable[[], bool] = lambda: False


class JsonlEventWriter:
    """Callbacks that append events to a JSON-lines file (flushed per event, fsynced per step)."""

    def __init__(self, path: str | Path, *, stop_file: str | Path | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")
        self.stop_file = Path(stop_file) if stop_file else None

    def write(self, kind: str, **payload: Any) -> None:
        self._fh.write(
            json.dumps({"kind": kind, "time": time.time(), **payload}, allow_nan=False, default=_json_default) + "\n"
        )
        self._fh.flush()

    def sync(self) -> None:
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def callbacks(self) -> Callbacks:
        def on_metrics(step: int, values: dict[str, float]) -> None:
            finite = {k: v for k, v in values.items() if v == v and abs(v) != float("inf")}
            self.write("metrics", step=step, values=finite)

        def on_progress(done: int, total: int) -> None:
            self.write("progress", step=done, total=total)
            self.sync()

        acknowledged: list[bool] = []

        def should_stop() -> bool:
            requested = bool(self.stop_file and self.stop_file.exists())
            if requested and not acknowledged:
                acknowledged.append(True)
                self.write("stopping")  # tells the worker the request arrived (no need to escalate)
            return requested

        return Callbacks(
            on_metrics=on_metrics,
            on_samples=lambda step, samples: self.write("samples", step=step, samples=[s.to_dict() for s in samples]),
            on_checkpoint=lambda step, path: self.write("checkpoint", step=step, path=path),
            on_progress=on_progress,
            on_log=lambda level, message: self.write("log", level=level, message=message),
            should_stop=should_stop,
        )


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_events(path: str | Path, offset: int = 0, *, max_bytes: int = 8 << 20) -> tuple[list[dict[str, Any]], int]:
    """Read complete event lines from ``offset``; returns the events and the new offset.

    A partially written last line is left for the next call, so a reader racing the writer never
    sees half an event. At most ``max_bytes`` are read per call to bound memory.
    """
    path = Path(path)
    if not path.exists():
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read(max_bytes)
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    events = [json.loads(line) for line in chunk[: end + 1].splitlines() if line.strip()]
    return events, offset + end + 1


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        events, offset = read_events(path, offset)
        if not events:
            return
        yield from events
