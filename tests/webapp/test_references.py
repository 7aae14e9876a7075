"""Finding 1 of the security review: a run names data and models by reference, never by server path.

A member of Rivals (Eve) could probe the server's files through the task field (file:/etc/passwd
201, file:/etc/nonexistent 400 "does not exist") and train on Lab's checkpoints by folder path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.test_forms import form_data
from trainer.config import TrainConfig
from trainer.references import TASK_REFUSED
from webapp.models import ApiToken, Checkpoint, Run
from webapp.planning import run_plan
from webapp.worker.execution import run_dir, trainer_env

pytestmark = pytest.mark.django_db


def create_run(user: Any, project: Any, **body: Any) -> Any:
    raw = ApiToken.issue(user=user, name="t")[1]
    return Client().post(
        reverse("api-project-runs", args=[project.pk]),
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )


@pytest.mark.parametrize(
    ("field", "existing", "missing"),
    [
        ("task", "file:/etc/passwd", "file:/etc/nonexistent"),
        ("task", "file:/root/.ssh", "file:/root/.nope"),
        ("task", "data:../../../etc/passwd", "data:../../../etc/nonexistent"),
        ("model", "/etc", "/etc/nonexistent-folder"),
        ("model", "./var", "./nonexistent"),
    ],
)
def test_a_server_path_is_refused_with_the_same_message_whether_it_exists_or_not(
    eve: Any, other_project: Any, field: str, existing: str, missing: str
) -> None:
    answers = [create_run(eve, other_project, **{field: value}) for value in (existing, missing)]
    assert [a.status_code for a in answers] == [400, 400]
    # The answer may echo what was typed; nothing else in it depends on the server's files.
    typed = (existing, missing)
    said = [a.json() | {"error": a.json()["error"].replace(v, "VALUE")} for a, v in zip(answers, typed, strict=True)]
    assert said[0] == said[1]
    assert said[0]["field"] == field
    assert not Run.objects.exists()


def test_another_teams_checkpoint_folder_cannot_be_named_by_path(
    make_run: Callable[..., Run], eve: Any, other_project: Any
) -> None:
    lab_run = make_run(status="succeeded")
    folder = run_dir(lab_run.pk) / "checkpoints" / "step_000020"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    response = create_run(eve, other_project, model=str(folder))
    assert response.status_code == 400 and response.json()["field"] == "model"
    assert not Run.objects.filter(project=other_project).exists()


def test_a_checkpoint_is_named_by_run_and_step_within_the_team(
    make_run: Callable[..., Run], bob: Any, eve: Any, project: Any, other_project: Any, other_team: Any
) -> None:
    lab_run = make_run(status="succeeded")
    Checkpoint.objects.create(run=lab_run, step=20, path="/runs/x")
    ok = create_run(bob, project, model=f"run:{lab_run.pk}@20", steps=3)
    assert ok.status_code == 201, ok.json()
    assert Run.objects.get(pk=ok.json()["id"]).config["model"] == f"run:{lab_run.pk}@20"
    # Eve (Rivals) gets the message of a run that does not exist at all.
    theirs = create_run(eve, other_project, model=f"run:{lab_run.pk}@20")
    nothing = create_run(eve, other_project, model=f"run:{lab_run.pk + 1000}@20")
    assert theirs.status_code == nothing.status_code == 400
    assert theirs.json()["error"].replace(f"run {lab_run.pk} ", "run N ") == nothing.json()["error"].replace(
        f"run {lab_run.pk + 1000} ", "run N "
    )
    assert create_run(bob, project, model=f"run:{lab_run.pk}@5").status_code == 400  # no such step


def test_a_shared_dataset_and_a_team_model_are_named_by_reference(bob: Any, project: Any) -> None:
    response = create_run(bob, project, task="data:deepmath/train.jsonl", model="local:my-sft")
    assert response.status_code == 201, response.json()


def test_the_run_form_refuses_a_server_path_on_the_field(
    client_for: Callable[[Any], Any], bob: Any, project: Any
) -> None:
    url = reverse("webapp-run-create", args=[project.pk])
    response = client_for(bob).post(url, form_data(task="file:/etc/passwd"))
    assert response.status_code == 400
    assert response.context["form"].errors["task"] == [TASK_REFUSED]
    assert not Run.objects.exists()


def test_the_trainer_child_sees_only_its_teams_roots_and_refuses_paths(
    make_run: Callable[..., Run], settings: Any
) -> None:
    env = trainer_env(make_run())
    assert env["PSL_REFERENCES_ONLY"] == "1"
    data = env["PSL_DATA_ROOTS"].split(os.pathsep)
    lab = settings.PSL_TEAMS_DIR / "lab"
    assert data == [str(lab / "uploads"), str(lab / "data"), str(settings.PSL_DATA_DIR)]
    assert env["PSL_MODEL_ROOTS"].split(os.pathsep)[0] == str(settings.PSL_TEAMS_DIR / "lab" / "models")


def test_the_web_host_plans_without_reading_its_own_files(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64}')
    assert run_plan(TrainConfig(model=str(folder)), "cpu") is None
    assert run_plan(TrainConfig(model="tiny-random"), "cpu") is not None


def test_a_checkpoint_of_another_teams_run_gets_no_estimate_that_would_tell_it_exists(
    make_run: Callable[..., Run], client_for: Callable[[Any], Any], eve: Any, other_project: Any
) -> None:
    lab_run = make_run(status="succeeded", model="smollm2-135m")
    for model in (f"run:{lab_run.pk}@2", f"run:{lab_run.pk + 1000}@2"):
        assert run_plan(TrainConfig(model=model), "cpu") is None
        url = reverse("webapp-run-create", args=[other_project.pk])
        response = client_for(eve).post(url, form_data(model=model))
        assert response.status_code == 400 and response.context["form"].plan is None
