"""What a web user may name as a run's model and task: built-ins, hub ids, names under the configured
roots, or another run's checkpoint by id and step. Never a server path (``trainer.references``).

The web host checks syntax and permissions only; the files live on the worker, which resolves the
names under the roots this module gives its children (the run's team's folders first) and refuses
server paths again there (``PSL_REFERENCES_ONLY``). A refused name gets the same message whether or
not anything exists at that path, and a run id of another team the same message as a missing one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

from trainer.config import ConfigError, TrainConfig
from trainer.references import MODEL_REFUSED, TASK_REFUSED, parse_model, parse_task
from webapp.models import Checkpoint, Project, Run, Team


def check_references(*, config: TrainConfig, project: Project, user: Any) -> None:
    """Raise ConfigError(field, message) for a task or model a run of ``project`` may not use."""
    task = parse_task(config.task)
    if task is None or task.kind not in ("builtin", "data"):
        raise ConfigError("task", TASK_REFUSED)
    model = parse_model(config.model)
    if model is None or model.kind not in ("builtin", "hub", "local", "run"):
        raise ConfigError("model", MODEL_REFUSED)
    if model.kind != "run":
        return
    if source_checkpoint(project=project, user=user, run_id=model.run_id, step=model.step) is None:
        raise ConfigError("model", f"no run {model.run_id} of this team has a checkpoint at step {model.step}")


def source_checkpoint(*, project: Project, user: Any, run_id: int, step: int) -> Checkpoint | None:
    """The checkpoint a ``run:<id>@<step>`` model names, if the user may read that run and it belongs
    to ``project``'s team (weights never cross teams); None otherwise, whatever the reason."""
    runs = Run.objects.for_user(user).filter(project__team_id=project.team_id)
    return Checkpoint.objects.filter(run__in=runs, run_id=run_id, step=step).select_related("run").first()


def uploads_folder(team: Team) -> Path:
    """Where a worker writes ``team``'s uploaded datasets (webapp.worker.datasets); nothing else lives there."""
    return settings.PSL_TEAMS_DIR / team.slug / "uploads"


def team_roots(team: Team) -> dict[str, str]:
    """The environment of a worker's child for a run of ``team``: its roots, team folders first
    (its uploads, then the folder its operators fill, then the shared one)."""
    team_dir = settings.PSL_TEAMS_DIR / team.slug
    data = [uploads_folder(team), team_dir / "data", settings.PSL_DATA_DIR]
    return {
        "PSL_DATA_ROOTS": os.pathsep.join(str(p) for p in data),
        "PSL_MODEL_ROOTS": os.pathsep.join([str(team_dir / "models"), str(settings.PSL_MODELS_DIR)]),
        "PSL_RUNS_DIR": str(settings.PSL_RUNS_DIR),
    }
