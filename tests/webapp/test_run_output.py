"""The trainer's stdout/stderr becomes levelled log entries; a traceback stays one entry; the file rotates."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.worker.run_output import MAX_ENTRY_CHARS, OutputParser, OutputTail, levels_from, line_level

TRACEBACK = """Traceback (most recent call last):
  File "/x/trainer/cli.py", line 10, in main
    train(cfg)
  File "/x/trainer/loop.py", line 20, in train
    raise ValueError("bad row")
ValueError: bad row"""

CHAINED = f"""{TRACEBACK}

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/trainer/cli.py", line 12, in main
    raise RuntimeError("while failing")
RuntimeError: while failing"""


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("step 3/30 (41.2 s) reward=0.25", "info"),
        ("/x/site-packages/torch/nn.py:12: UserWarning: something is deprecated", "warning"),
        ("WARNING: the cache is cold", "warning"),
        ("error: invalid config: lr: must be > 0", "error"),
        ("RuntimeError: CUDA out of memory", "error"),
        ("DEBUG resolved tiny-random", "debug"),
    ],
)
def test_a_line_gets_the_level_its_text_announces(line: str, level: str) -> None:
    assert line_level(line) == level


def test_a_traceback_is_one_error_entry_and_the_lines_around_it_are_their_own() -> None:
    parser = OutputParser()

    entries = parser.feed(["loading", *TRACEBACK.splitlines(), "after"])

    assert entries == [("info", "loading"), ("error", TRACEBACK), ("info", "after")]
    assert parser.last_traceback == TRACEBACK


def test_a_chained_traceback_stays_one_entry_and_waits_for_its_end() -> None:
    parser = OutputParser()
    lines = CHAINED.splitlines()

    assert parser.feed(lines[:8]) == []  # still open: the chained part may follow
    assert parser.feed(lines[8:]) == []  # complete, but a further chained part could still come
    assert parser.idle() == [("error", CHAINED)]


def test_an_unfinished_traceback_is_emitted_when_the_output_ends() -> None:
    parser = OutputParser()
    parser.feed(TRACEBACK.splitlines()[:3])

    assert parser.idle() == []
    assert parser.flush() == [("error", "\n".join(TRACEBACK.splitlines()[:3]))]


def test_a_huge_entry_is_cut_keeping_its_end() -> None:
    (_, message), *_ = OutputParser().feed(["x" * 100_000 + " the end"])

    assert len(message) < MAX_ENTRY_CHARS + 100 and message.endswith(" the end") and "characters cut" in message


def test_the_tail_reads_only_complete_lines_and_a_progress_bar_as_its_last_state(tmp_path: Path) -> None:
    log = tmp_path / "attempt-0.log"
    log.write_bytes(b"Loading 0%\rLoading 100%\nhalf a li")
    tail = OutputTail(log, max_bytes=1 << 20)

    assert tail.read() == [("info", "Loading 100%")]
    with log.open("ab") as fh:
        fh.write(b"ne\n\x00nul\n")
    assert tail.read() == [("info", "half a line"), ("info", "\ufffdnul")]
    assert tail.read() == []


def test_the_file_rotates_past_its_bound_and_no_line_is_lost(tmp_path: Path) -> None:
    log = tmp_path / "attempt-0.log"
    tail = OutputTail(log, max_bytes=200)
    seen: list[str] = []
    with log.open("ab") as fh:  # the child's descriptor: append mode, kept open across the rotation
        for i in range(40):
            fh.write(f"line {i:03d} of the trainer's output\n".encode())
            fh.flush()
            seen.extend(message for _, message in tail.read())

    assert seen == [f"line {i:03d} of the trainer's output" for i in range(40)]
    assert tail.rotations >= 3
    assert log.stat().st_size < 200 and (tmp_path / "attempt-0.log.1").exists()


def test_a_level_filter_keeps_that_level_and_the_more_severe_ones() -> None:
    assert levels_from("warning") == ("warning", "error")
    with pytest.raises(ValueError, match="valid: debug, info, warning, error"):
        levels_from("loud")
