"""A trainer's stdout/stderr on its way into the run's log.

The child writes its output to ``attempt-N.log`` in the run folder (``webapp.worker.child_process``);
the supervisor tails that file with :class:`OutputTail` and stores each entry as a ``RunLog`` row
(source "output") next to the trainer's own log events. An entry is one line with a level read
from its text, or a whole Python traceback (chained ones included) as one ``error`` entry, so a
crash shows on the run page as it was printed.

Bounds: an entry is cut to ``MAX_ENTRY_CHARS``; the file is rotated once it passes
``PSL_LOG_FILE_MAX_BYTES`` (copied to ``attempt-N.log.1``, then truncated in place: the child's
descriptor is in append mode, so it keeps writing at the new end; a line written between the copy
and the truncation is lost, as with logrotate's copytruncate); the database keeps the newest
``PSL_LOG_MAX_LINES`` output entries per attempt (``webapp.worker.ingest.logs_trim``).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trainer.choices import LOG_LEVELS

MAX_ENTRY_CHARS = 8000
TRACEBACK_START = "Traceback (most recent call last):"
# The lines between the tracebacks of a chained exception.
CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_ERROR = re.compile(r"^\s*(?:error|critical|fatal)\b|^[\w.]*(?:Error|Exception)\b:|\bKilled\b", re.IGNORECASE)
_WARNING = re.compile(r"\bwarn(?:ing)?s?\b|Warning:", re.IGNORECASE)
_DEBUG = re.compile(r"^\s*debug\b", re.IGNORECASE)
Entry = tuple[str, str]  # (level, message)


def line_level(line: str) -> str:
    """The level a line of output announces (error, warning, debug), else info."""
    if _ERROR.search(line):
        return "error"
    if _WARNING.search(line):
        return "warning"
    if _DEBUG.search(line):
        return "debug"
    return "info"


def clip(text: str, limit: int = MAX_ENTRY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, keeping its start and (mostly) its end."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]}\n… {len(text) - head - tail} characters cut …\n{text[-tail:]}"


@dataclass
class OutputParser:
    """Turns lines of output into entries; a traceback is held until it is complete.

    A traceback runs from ``Traceback (most recent call last):`` over its indented frame lines to
    the first unindented line (the exception); a chained exception's text continues it.
    """

    block: list[str] = field(default_factory=list)
    closed: bool = False  # the block has its exception line; a chained traceback may still follow
    last_traceback: str = ""

    def feed(self, lines: list[str]) -> list[Entry]:
        out: list[Entry] = []
        for line in lines:
            if self.block and self._continues(line):
                self.block.append(line)
                continue
            if self.block:
                out.extend(self._emit())
            if line.startswith(TRACEBACK_START):
                self.block, self.closed = [line], False
            elif line.strip():
                out.append((line_level(line), clip(line)))
        return out

    def _continues(self, line: str) -> bool:
        if not self.closed:
            if not line.strip() or line[:1].isspace() or line.startswith(TRACEBACK_START):
                return True
            self.closed = True  # the exception line ends the traceback
            return True
        # After the exception line: blank lines and a chained traceback still belong to it.
        if not line.strip() or line.startswith(CHAINED) or line.startswith(TRACEBACK_START):
            self.closed = not line.startswith(TRACEBACK_START)
            return True
        return False

    def idle(self) -> list[Entry]:
        """No more output for now: a finished traceback need not wait for the next line."""
        return self._emit() if self.block and self.closed else []

    def flush(self) -> list[Entry]:
        """The output has ended: emit whatever is held."""
        return self._emit() if self.block else []

    def _emit(self) -> list[Entry]:
        text = "\n".join(self.block).rstrip()
        self.block, self.closed = [], False
        self.last_traceback = text
        return [("error", clip(text))]


@dataclass
class OutputTail:
    """Reads the complete lines a child appended to its log since the last call (see the module doc)."""

    path: Path
    max_bytes: int
    offset: int = 0
    parser: OutputParser = field(default_factory=OutputParser)
    rotations: int = 0

    @property
    def last_traceback(self) -> str:
        return self.parser.last_traceback

    def read(self, *, final: bool = False) -> list[Entry]:
        """New entries; ``final``: the child has exited, so a last line without a newline counts too."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return self.parser.flush() if final else []
        end = len(data) if final else data.rfind(b"\n") + 1
        entries = self._parse(data[:end])
        self.offset += end
        if self.offset >= self.max_bytes and not final:
            entries += self._rotate()
        entries += self.parser.flush() if final else self.parser.idle()
        return entries

    def _parse(self, data: bytes) -> list[Entry]:
        if not data:
            return []
        # A progress bar redraws its line with \r: keep what the line finally showed. PostgreSQL
        # text cannot hold NUL.
        text = data.decode("utf-8", "replace").replace("\x00", "\ufffd")
        lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
        if lines and not lines[-1]:
            lines.pop()
        return self.parser.feed(lines)

    def _rotate(self) -> list[Entry]:
        backup = self.path.with_name(self.path.name + ".1")
        shutil.copyfile(self.path, backup)
        with backup.open("rb") as fh:  # what the child wrote since our read, up to the copy
            fh.seek(self.offset)
            rest = fh.read()
        os.truncate(self.path, 0)
        self.offset = 0
        self.rotations += 1
        return self._parse(rest)


def levels_from(level: str) -> tuple[str, ...]:
    """``level`` and the more severe ones; ValueError names the valid levels."""
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; valid: {', '.join(LOG_LEVELS)}")
    return LOG_LEVELS[LOG_LEVELS.index(level) :]
