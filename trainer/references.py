"""What a run names as its model and its task, and where those names lead on the host that reads them.

A name is parsed by syntax alone (no filesystem access, so the web host can check it):

- task: a built-in task (``trainer.choices.TASKS``), ``data:<name>`` (a file or folder under a data
  root), or ``file:<path>`` (a path on this machine: the command line only);
- model: a registry name, a hub id (``org/name``), ``local:<name>`` (a folder under a model root),
  ``run:<id>@<step>`` (another run's checkpoint), or a folder path (the command line only).

The roots come from the environment of the process that reads the files (the worker sets them for
its trainer and evaluator children, one team's folders first): ``PSL_DATA_ROOTS`` and
``PSL_MODEL_ROOTS`` (``os.pathsep``-separated; defaults ``$PSL_DATA_DIR`` or ``var/data``, and
``$PSL_MODELS_DIR`` or the model cache), ``PSL_RUNS_DIR`` for run checkpoints. A name that is
missing, or whose real path (symlinks followed) leaves its root, gets one and the same message, so
nothing can be learnt about files outside the roots. With ``PSL_REFERENCES_ONLY=1`` (set by the
worker) server paths are refused outright.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from trainer.choices import TASKS

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_PREFIX = "data:"
FILE_PREFIX = "file:"
LOCAL_PREFIX = "local:"
RUN_PREFIX = "run:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_RUN_REF = re.compile(r"^run:([1-9][0-9]{0,17})@([0-9]{1,9})$")
# One component of a root-relative name: no hidden files, no "..", no separators of other systems.
_PART = re.compile(r"^[A-Za-z0-9_][\w.+=-]*$")

TASK_REFUSED = f"use a built-in task ({', '.join(TASKS)}) or data:<name> for a dataset in the data folder"
MODEL_REFUSED = (
    "use a registry name, a hub id (org/name), local:<name> for a folder in the models folder, "
    "or run:<id>@<step> for a checkpoint of another run"
)


@dataclass(frozen=True)
class Reference:
    """A parsed name. ``kind``: builtin, hub, data, local, run or path (a server path)."""

    kind: str
    name: str
    run_id: int = 0
    step: int = 0

    @property
    def is_server_path(self) -> bool:
        return self.kind == "path"


def is_root_relative(name: str) -> bool:
    """``a/b.jsonl``-style: relative, no ``..``, no hidden or empty components."""
    parts = name.split("/")
    return 0 < len(name) <= 300 and all(_PART.match(p) for p in parts)


def is_explicit_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..") or name.count("/") > 1


def parse_task(value: str) -> Reference | None:
    """The task reference ``value`` names, or None if it names nothing valid."""
    if value in TASKS:
        return Reference("builtin", value)
    if value.startswith(DATA_PREFIX):
        name = value[len(DATA_PREFIX) :]
        return Reference("data", name) if is_root_relative(name) else None
    if value.startswith(FILE_PREFIX):
        path = value[len(FILE_PREFIX) :]
        return Reference("path", path) if path.strip() else None
    return None


def parse_model(value: str) -> Reference | None:
    """The model reference ``value`` names, or None if it names nothing valid."""
    from trainer.registry import MODELS

    if not value or value != value.strip():
        return None
    if value in MODELS:
        return Reference("builtin", value)
    if value.startswith(LOCAL_PREFIX):
        name = value[len(LOCAL_PREFIX) :]
        return Reference("local", name) if is_root_relative(name) else None
    if value.startswith(RUN_PREFIX):
        match = _RUN_REF.match(value)
        return Reference("run", value, run_id=int(match[1]), step=int(match[2])) if match else None
    if is_explicit_path(value):
        return Reference("path", value)
    if HUB_ID.match(value):
        return Reference("hub", value)
    return None


def run_ref(run_id: int, step: int) -> str:
    return f"{RUN_PREFIX}{run_id}@{step}"


# --- resolution on the host that reads the files ------------------------------------------------------


class NotFound(LookupError):
    """The reference leads to nothing readable inside its roots (the message never says which)."""


def references_only() -> bool:
    return os.environ.get("PSL_REFERENCES_ONLY") == "1"


def _roots(variable: str, default: Path) -> list[Path]:
    raw = os.environ.get(variable, "")
    return [Path(p) for p in raw.split(os.pathsep) if p] if raw else [default]


def data_roots() -> list[Path]:
    return _roots("PSL_DATA_ROOTS", Path(os.environ.get("PSL_DATA_DIR") or REPO_ROOT / "var" / "data"))


def model_roots() -> list[Path]:
    from trainer.registry import cache_dir

    return _roots("PSL_MODEL_ROOTS", Path(os.environ.get("PSL_MODELS_DIR") or cache_dir()))


def runs_dir() -> Path:
    return Path(os.environ.get("PSL_RUNS_DIR") or REPO_ROOT / "var" / "runs")


def find_under(name: str, roots: list[Path]) -> Path | None:
    """The first ``root/name`` that exists and whose real path stays inside its root's real path."""
    if not is_root_relative(name):
        return None
    for root in roots:
        try:
            real_root = root.resolve(strict=True)
            real = (root / name).resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_relative_to(real_root) and real != real_root:
            return real
    return None


def not_found_message(field: str, value: str) -> str:
    where = {"task": "the data folder", "model": "the models folder or the run's checkpoints"}[field]
    return f"{value!r} is not available in {where} of this worker"


def resolve_task_path(value: str) -> Path:
    """The dataset file or folder a ``data:`` or ``file:`` task reads; raises NotFound."""
    ref = parse_task(value)
    if ref is None or ref.kind not in ("data", "path") or (ref.kind == "path" and references_only()):
        raise NotFound(not_found_message("task", value))
    if ref.kind == "path":  # the command line: the operator's own machine, so say what is wrong
        if not Path(ref.name).exists():
            raise NotFound(f"dataset file {ref.name!r} does not exist")
        return Path(ref.name)
    found = find_under(ref.name, data_roots())
    if found is None:
        raise NotFound(not_found_message("task", value))
    return found


def resolve_model_path(value: str) -> Path:
    """The folder a ``local:``, ``run:`` or path model loads from (with a config.json); raises NotFound."""
    from trainer.paths import checkpoint_dir, run_folder

    ref = parse_model(value)
    if ref is None or ref.kind not in ("local", "run", "path") or (ref.kind == "path" and references_only()):
        raise NotFound(not_found_message("model", value))
    if ref.kind == "local":
        found = find_under(ref.name, model_roots())
    elif ref.kind == "run":
        root = runs_dir()
        candidate = checkpoint_dir(run_folder(root, ref.run_id), ref.step)
        found = candidate if candidate.resolve().is_relative_to(root.resolve()) else None
    else:  # the command line: the operator's own machine, so say what is wrong
        found = Path(ref.name).expanduser()
        if not found.is_dir():
            raise NotFound(f"model folder {value!r} does not exist on this machine")
        if not (found / "config.json").is_file():
            raise NotFound(f"{value} is a folder but has no config.json (not a Hugging Face model folder)")
    if found is None or not (found / "config.json").is_file():
        raise NotFound(not_found_message("model", value))
    return found
