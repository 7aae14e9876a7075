"""Models and datasets by reference: names under configured roots, never a way to probe the host's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig, check_resources
from trainer.references import NotFound, parse_model, parse_task, resolve_model_path, resolve_task_path


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("arith", "builtin"),
        ("data:math/train.jsonl", "data"),
        ("data:../etc/passwd", None),
        ("data:/etc/passwd", None),
        ("data:.ssh/id_rsa", None),
        ("data:a//b", None),
        ("file:/etc/passwd", "path"),
        ("gsm8k", None),
    ],
)
def test_a_task_name_is_parsed_by_syntax_alone(value: str, kind: str | None) -> None:
    ref = parse_task(value)
    assert (ref.kind if ref else None) == kind


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("tiny-random", "builtin"),
        ("Qwen/Qwen3-1.7B", "hub"),
        ("local:my-sft", "local"),
        ("local:../../root", None),
        ("run:12@20", "run"),
        ("run:12", None),
        ("run:0@5", None),
        ("run:x@5", None),
        ("/root/.ssh", "path"),
        ("./var/runs/run-1", "path"),
        ("var/runs/run-1/checkpoints/step_000020", "path"),
        ("no such model!", None),
    ],
)
def test_a_model_name_is_parsed_by_syntax_alone(value: str, kind: str | None) -> None:
    ref = parse_model(value)
    assert (ref.kind if ref else None) == kind


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    team, shared, models, runs = (tmp_path / n for n in ("team-data", "shared-data", "models", "runs"))
    for folder in (team, shared, models, runs):
        folder.mkdir()
    monkeypatch.setenv("PSL_DATA_ROOTS", os.pathsep.join([str(team), str(shared)]))
    monkeypatch.setenv("PSL_MODEL_ROOTS", str(models))
    monkeypatch.setenv("PSL_RUNS_DIR", str(runs))
    return {"team": team, "shared": shared, "models": models, "runs": runs, "outside": tmp_path}


def test_a_data_name_is_found_in_the_team_folder_first_then_the_shared_one(roots: dict[str, Path]) -> None:
    (roots["shared"] / "q.jsonl").write_text("{}\n")
    assert resolve_task_path("data:q.jsonl") == (roots["shared"] / "q.jsonl").resolve()
    (roots["team"] / "q.jsonl").write_text("{}\n")
    assert resolve_task_path("data:q.jsonl") == (roots["team"] / "q.jsonl").resolve()


def test_a_symlink_out_of_the_root_reads_exactly_like_a_missing_name(roots: dict[str, Path]) -> None:
    secret = roots["outside"] / "secret.jsonl"
    secret.write_text('{"question": "q", "answer": "a"}\n')
    (roots["shared"] / "escape.jsonl").symlink_to(secret)
    messages = []
    for name in ("escape.jsonl", "missing.jsonl"):
        with pytest.raises(NotFound) as err:
            resolve_task_path(f"data:{name}")
        messages.append(str(err.value).replace(name, "NAME"))
    assert messages[0] == messages[1]


def test_on_a_worker_server_paths_are_refused_whether_they_exist_or_not(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSL_REFERENCES_ONLY", "1")
    errors = {}
    for field, values in {
        "task": ("file:/etc/passwd", "file:/etc/nonexistent"),
        "model": ("/etc", "/etc/nonexistent-folder"),
    }.items():
        for value in values:
            with pytest.raises(ConfigError) as err:
                check_resources(TrainConfig(**{field: value}))  # type: ignore[arg-type]
            assert err.value.field == field
            errors[value] = err.value.message.replace(repr(value), "VALUE")
    assert errors["file:/etc/passwd"] == errors["file:/etc/nonexistent"]
    assert errors["/etc"] == errors["/etc/nonexistent-folder"]


def test_a_run_checkpoint_is_read_from_the_run_folders(roots: dict[str, Path]) -> None:
    with pytest.raises(NotFound):
        resolve_model_path("run:7@20")
    ckpt = roots["runs"] / "run-7" / "checkpoints" / "step_000020"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    assert resolve_model_path("run:7@20") == ckpt
    check_resources(TrainConfig(model="run:7@20"))


def test_a_local_model_needs_a_config_json_under_a_model_root(roots: dict[str, Path]) -> None:
    (roots["models"] / "sft").mkdir()
    with pytest.raises(ConfigError) as err:
        check_resources(TrainConfig(model="local:sft"))
    assert err.value.field == "model"
    (roots["models"] / "sft" / "config.json").write_text("{}")
    check_resources(TrainConfig(model="local:sft"))


def test_a_hub_id_is_never_read_from_the_filesystem(
    roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.planner import model_shape

    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "name" / "config.json").write_text('{"hidden_size": 8}')
    monkeypatch.chdir(tmp_path)
    check_resources(TrainConfig(model="org/name"))  # a hub id: resolved at load time, from the hub
    assert model_shape("org/name") is None
