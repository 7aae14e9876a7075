"""The events file parser: a torn last line waits for its end, an invalid line is quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.events import parse_lines, read_lines


def _line(kind: str = "metrics", **payload: object) -> bytes:
    payload = payload or {"step": 1, "values": {"train/reward": 0.5}}
    return json.dumps({"kind": kind, **payload}).encode() + b"\n"


def test_it_parses_complete_lines_and_leaves_a_torn_last_line_for_later() -> None:
    first, second = _line(), _line("progress", step=1, total=3)
    chunk = first + second[:10]

    events, quarantined, consumed = parse_lines(chunk)

    assert [e["kind"] for e in events] == ["metrics"] and quarantined == []
    assert consumed == len(first)  # the torn line is read again once the writer completes it
    events, quarantined, consumed = parse_lines(chunk[consumed:] + second[10:])
    assert [e["kind"] for e in events] == ["progress"] and consumed == len(second)


def test_it_quarantines_garbage_lines_and_keeps_the_events_around_them() -> None:
    chunk = _line() + b'{"kind": "metr{"kind":"log","message":"x"}\n' + b"\xff\xfe\n" + b"[1, 2]\n" + _line("done")

    events, quarantined, consumed = parse_lines(chunk)

    assert [e["kind"] for e in events] == ["metrics", "done"]
    assert [q.reason.split(" ")[0] for q in quarantined] == ["not", "not", "not"]
    assert consumed == len(chunk)
    assert quarantined[0].offset == len(_line()) and quarantined[0].head.startswith('{"kind": "metr')


def test_it_quarantines_well_formed_json_that_is_not_a_valid_event() -> None:
    bad = [
        {"kind": "metrics", "values": {"a": 1}},  # no step
        {"kind": "metrics", "step": 1, "values": {"a": "high"}},
        {"kind": "metrics", "step": True, "values": {}},
        {"kind": "metrics", "step": 2**40, "values": {}},
        {"kind": "samples", "step": 1, "samples": [{"question_id": "q"}]},
        {"kind": "teleport"},
        {"kind": "log"},
    ]
    not_json = b'{"kind": "metrics", "step": 1, "values": {"a": NaN}}\n'
    chunk = b"".join(json.dumps(b).encode() + b"\n" for b in bad) + not_json

    events, quarantined, _ = parse_lines(chunk)

    assert events == [] and len(quarantined) == len(bad) + 1


def test_a_torn_last_line_is_quarantined_once_the_writer_is_gone() -> None:
    chunk = _line() + b'{"kind": "progr'
    events, quarantined, consumed = parse_lines(chunk, final=True)
    assert len(events) == 1 and consumed == len(chunk)
    assert quarantined[0].reason.startswith("torn last line")


def test_a_final_read_of_a_long_file_loses_no_line_at_its_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [_line(step=s, values={"train/reward": s / 7}) for s in range(500)]
    path.write_bytes(b"".join(lines))
    offset, steps, quarantined = 0, [], []
    while True:  # a drain after the writer is gone, in chunks that cut lines in two
        events, bad, offset = read_lines(path, offset, max_bytes=1000, final=True)
        if not events and not bad:
            break
        steps += [e["step"] for e in events]
        quarantined += bad
    assert steps == list(range(500)) and not quarantined


def test_nul_characters_of_model_output_never_reach_the_database() -> None:
    events, _, _ = parse_lines(_line("log", message="a\u0000b"))
    assert events[0]["message"] == "a\ufffdb"


def test_read_lines_reads_a_line_longer_than_its_chunk_whole(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    long = _line("log", message="x" * 5000)
    path.write_bytes(long + _line())

    events, quarantined, offset = read_lines(path, 0, max_bytes=1000)

    assert [e["kind"] for e in events] == ["log", "metrics"] and quarantined == []
    assert offset == path.stat().st_size


def test_read_lines_skips_a_line_beyond_the_hard_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.events as events_module

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"y" * 3000 + b"\n" + _line())
    monkeypatch.setattr(events_module, "MAX_LINE_BYTES", 2000)

    events, quarantined, offset = read_lines(path, 0, max_bytes=500)

    assert events == [] and quarantined[0].reason.startswith("line longer")
    assert offset == 3001  # the next call reads the valid line after it
    assert read_lines(path, offset)[0][0]["kind"] == "metrics"


def test_the_head_of_a_quarantined_line_is_safe_to_store() -> None:
    _, quarantined, _ = parse_lines(b"\x00\xffjunk\n")
    assert "\x00" not in quarantined[0].head
