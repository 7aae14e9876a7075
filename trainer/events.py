"""What the training loop reports, and how it reaches a consumer.

The loop calls ``Callbacks``; ``JsonlEventWriter`` turns them into an append-only JSON-lines file
(one event per line: metrics, samples, progress, checkpoint, log, done). The web app's worker
runs the trainer in a child process and tails that file, so a crash of either side loses
nothing that was written, and replaying the file is idempotent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from trainer.choices import MODES


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


# The fields each event kind must carry, with their JSON types; anything else is quarantined.
EVENT_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "metrics": {"step": int, "values": dict},
    "samples": {"step": int, "samples": list},
    "progress": {"step": int, "total": int},
    "checkpoint": {"step": int, "path": str},
    "log": {"message": str},
    "done": {},
    "stopping": {},
}
MAX_STEP = 2**31 - 1  # steps and counts are 32-bit integers in the database
MAX_METRIC_KEY = 80  # the longest metric key the database stores
# A line longer than this is never an event the trainer wrote (samples of one step stay far below).
MAX_LINE_BYTES = 64 << 20


@dataclass(frozen=True)
class Quarantined:
    """A line of an events file that is not a valid event: where it starts, why, and its first bytes."""

    offset: int  # byte offset of the line, relative to the chunk given to parse_lines
    reason: str
    head: str


def parse_lines(chunk: bytes, *, final: bool = False) -> tuple[list[dict[str, Any]], list[Quarantined], int]:
    """Split a chunk of an events file into valid events and quarantined lines.

    Returns ``(events, quarantined, consumed)``: ``consumed`` is the number of bytes of ``chunk``
    that were dealt with; the rest is a torn last line (no newline yet) to read again once the
    writer completes it. With ``final`` (the writer is gone, nothing will complete it) a torn last
    line is quarantined instead. A pure function: the caller owns offsets and what it does with
    the events (batching, flushing).
    """
    events: list[dict[str, Any]] = []
    quarantined: list[Quarantined] = []
    pos = 0
    while pos < len(chunk):
        end = chunk.find(b"\n", pos)
        if end < 0:
            if not final:
                break
            end = len(chunk)
            torn = True
        else:
            torn = False  # a complete line; a torn one that still parses lost only its newline
        line = chunk[pos:end]
        if line.strip():
            event, reason = _parse_event(line)
            if reason:
                quarantined.append(Quarantined(pos, f"torn last line, {reason}" if torn else reason, _head(line)))
            elif event is not None:
                events.append(event)
        pos = min(end + 1, len(chunk))
    return events, quarantined, pos


def _parse_event(line: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        event = json.loads(line, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(event, dict):
        return None, f"not a JSON object ({type(event).__name__})"
    kind = event.get("kind")
    if kind not in EVENT_FIELDS:
        return None, f"unknown kind {str(kind)[:40]!r}"
    for name, kinds in EVENT_FIELDS[kind].items():
        value = event.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return None, f"{kind} event without a valid {name!r}"
    if "step" in EVENT_FIELDS[kind] and not 0 <= event["step"] <= MAX_STEP:
        return None, f"{kind} event with step {event['step']} out of range"
    if kind == "metrics" and not all(
        isinstance(k, str) and 0 < len(k) <= MAX_METRIC_KEY and _is_number(v) for k, v in event["values"].items()
    ):
        return None, "metrics event with a bad key or a non-numeric value"
    if kind == "samples" and not all(_is_sample(s) for s in event["samples"]):
        return None, "samples event with an incomplete sample"
    return _without_nul(event), ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_sample(sample: Any) -> bool:
    return (
        isinstance(sample, dict)
        and all(isinstance(sample.get(k), str) for k in ("question_id", "response"))
        and sample.get("mode") in MODES
        and sample.get("context") in MODES
        and isinstance(sample.get("index"), int)
        and 0 <= sample["index"] < 2**15
        and isinstance(sample.get("num_tokens"), int)
        and 0 <= sample["num_tokens"] <= MAX_STEP
        and _is_number(sample.get("reward"))
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _without_nul(value: Any) -> Any:
    # Model outputs are arbitrary text; PostgreSQL text columns cannot hold NUL, so it never gets there.
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _head(line: bytes, size: int = 200) -> str:
    return _without_nul(line[:size].decode("utf-8", errors="replace"))


def read_lines(
    path: str | Path, offset: int = 0, *, max_bytes: int = 8 << 20, final: bool = False
) -> tuple[list[dict[str, Any]], list[Quarantined], int]:
    """Read from ``offset`` and parse (see ``parse_lines``); returns events, quarantined lines
    (offsets absolute in the file) and the new offset.

    At most ``max_bytes`` are read per call to bound memory, except that a single line longer than
    that is read whole (up to ``MAX_LINE_BYTES``, beyond which it is quarantined unread).
    """
    path = Path(path)
    if not path.exists():
        return [], [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read(max_bytes)
        while len(chunk) >= max_bytes and b"\n" not in chunk and len(chunk) < MAX_LINE_BYTES:
            more = fh.read(max_bytes)  # one long line: keep reading until it ends
            if not more:
                break
            chunk += more
        if b"\n" not in chunk and len(chunk) >= MAX_LINE_BYTES:
            return [], [Quarantined(offset, "line longer than MAX_LINE_BYTES", _head(chunk))], _skip_line(fh, offset)
        # A last line cut by max_bytes is not torn: the next call reads it whole. Only at the end of
        # the file can ``final`` (the writer is gone) make an unterminated line invalid.
        at_end = fh.read(1) == b""
    events, quarantined, consumed = parse_lines(chunk, final=final and at_end)
    return events, [dataclasses.replace(q, offset=offset + q.offset) for q in quarantined], offset + consumed


def _skip_line(fh: IO[bytes], offset: int) -> int:
    """The offset just after the line starting at ``offset`` (or the end of the file)."""
    fh.seek(offset)
    while block := fh.read(1 << 20):
        if (cut := block.find(b"\n")) >= 0:
            return fh.tell() - len(block) + cut + 1
    return fh.tell()


def read_events(path: str | Path, offset: int = 0, *, max_bytes: int = 8 << 20) -> tuple[list[dict[str, Any]], int]:
    """Read complete, valid event lines from ``offset``; returns the events and the new offset.

    A partially written last line is left for the next call, so a reader racing the writer never
    sees half an event; invalid lines are skipped (``read_lines`` reports them).
    """
    events, _quarantined, new_offset = read_lines(path, offset, max_bytes=max_bytes)
    return events, new_offset


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        events, offset = read_events(path, offset)
        if not events:
            return
        yield from events
