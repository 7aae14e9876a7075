"""A team's uploaded datasets: checked by the trainer's own reader, named data:<name>.jsonl by its runs,
written out by the worker into the team's uploads folder, and seen by that team only.

Lab: Alice admin, Bob member, Vera viewer; Eve is the admin of Rivals.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from trainer.data.datasets import load_questions
from trainer.references import resolve_task_path
from webapp import datasets
from webapp.models import Activity, ApiToken, Dataset, Team
from webapp.references import uploads_folder
from webapp.worker.datasets import write_team_datasets
from webapp.worker.execution import trainer_env

pytestmark = pytest.mark.django_db

ROWS = [
    {"question": "What is 2 + 3?", "answer": "5"},
    {"question": "<script>alert(1)</script> 7 - 4?", "answer": "3", "id": "q-script"},
    {"question": "Pick the prime.", "choices": ["4", "6", "7"], "answer": "C"},
]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(client: Any, team: Team, *, name: str = "adds", content: bytes | None = None, filename: str = "adds.jsonl"):
    file = SimpleUploadedFile(filename, jsonl(ROWS) if content is None else content)
    return client.post(reverse("webapp-datasets", args=[team.pk]), {"name": name, "file": file})


def stored(team: Team, name: str = "adds", *, actor: Any = None) -> Dataset:
    return datasets.dataset_upload(
        team=team, actor=actor, name=name, upload=io.BytesIO(jsonl(ROWS)), filename=f"{name}.jsonl"
    )


# --- upload ----------------------------------------------------------------------------------------


def test_a_member_uploads_a_jsonl_file_and_gets_the_task_name_runs_use(client_for: Callable, bob: Any, team: Team):
    response = upload(client_for(bob), team)
    dataset = Dataset.objects.get(team=team, name="adds")
    assert response.status_code == 302 and response["Location"] == reverse("webapp-dataset", args=[team.pk, dataset.pk])
    assert (dataset.rows, dataset.kinds, dataset.reference) == (3, {"math": 2, "choice": 1}, "data:adds.jsonl")
    assert gzip.decompress(bytes(dataset.content)) == jsonl(ROWS)
    assert dataset.size_bytes == len(jsonl(ROWS)) and dataset.created_by == bob
    assert "bob uploaded dataset data:adds.jsonl" in [f"{a.actor} {a.verb} {a.target}" for a in Activity.objects.all()]


def test_the_dataset_page_previews_questions_as_a_run_sees_them_escaped(client_for: Callable, bob: Any, team: Team):
    upload(client_for(bob), team)
    dataset = Dataset.objects.get(name="adds")
    page = client_for(bob).get(reverse("webapp-dataset", args=[team.pk, dataset.pk])).content.decode()
    assert '<code id="dataset-reference">data:adds.jsonl</code>' in page
    assert "Put your final answer inside \\boxed{}" in page  # the math prompt template, applied
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "### Choices" in page  # the choice row, with its options listed


def test_a_json_list_is_stored_as_jsonl(client_for: Callable, bob: Any, team: Team) -> None:
    response = upload(client_for(bob), team, content=json.dumps(ROWS).encode(), filename="adds.json")
    assert response.status_code == 302
    assert gzip.decompress(bytes(Dataset.objects.get(name="adds").content)).decode().splitlines() == [
        json.dumps(r, ensure_ascii=False) for r in ROWS
    ]


GOOD_ROW = b'{"question": "1+1?", "answer": "2"}\n'


@pytest.mark.parametrize(
    ("field", "content", "filename", "name", "said"),
    [
        ("file", GOOD_ROW + b'{"question": "no answer"}\n', "mine.jsonl", "ok", "mine.jsonl: row 2"),
        ("file", GOOD_ROW + b"not json\n", "mine.jsonl", "ok", "mine.jsonl: row 2: invalid JSON"),
        ("file", b"question,answer\n1+1,2\n", "mine.csv", "ok", "upload a .jsonl file"),
        ("file", b"\n\n", "mine.jsonl", "ok", "mine.jsonl has no rows"),
        ("file", b"", "mine.jsonl", "ok", "The submitted file is empty."),
        ("name", None, "adds.jsonl", "../etc", "no slashes"),
        ("name", None, "adds.jsonl", ".hidden", "starting with a letter or digit"),
    ],
)
def test_a_bad_upload_is_refused_on_its_field_and_nothing_is_stored(
    client_for: Callable, bob: Any, team: Team, field: str, content: bytes | None, filename: str, name: str, said: str
) -> None:
    response = upload(client_for(bob), team, name=name, content=content, filename=filename)
    assert response.status_code == 400
    errors = response.context["form"].errors[field]
    assert any(said in e for e in errors), errors
    assert "/tmp" not in " ".join(errors) and str(Path(os.sep, "tmp")) not in response.content.decode()
    assert not Dataset.objects.exists()


def test_an_upload_over_the_size_limit_is_refused(client_for: Callable, bob: Any, team: Team, settings: Any) -> None:
    settings.PSL_DATASET_MAX_MB = 1
    big = jsonl([{"question": "x" * 1000, "answer": "1"}] * 1100)  # ~1.1 MB
    response = upload(client_for(bob), team, content=big)
    assert response.status_code == 400
    assert response.context["form"].errors["file"] == ["the file is larger than 1 MB"]
    assert not Dataset.objects.exists()


def test_a_name_is_taken_once_per_team_and_free_in_another(
    client_for: Callable, bob: Any, eve: Any, team: Team, other_team: Team
) -> None:
    assert upload(client_for(bob), team).status_code == 302
    again = upload(client_for(bob), team)
    assert again.status_code == 400 and "already has a dataset named adds" in again.context["form"].errors["name"][0]
    assert upload(client_for(eve), other_team).status_code == 302
    assert Dataset.objects.filter(name="adds").count() == 2


# --- who may do what -----------------------------------------------------------------------------------


def test_a_viewer_sees_and_downloads_but_cannot_upload(client_for: Callable, vera: Any, alice: Any, team: Team):
    dataset = stored(team, actor=alice)
    client = client_for(vera)
    listing = client.get(reverse("webapp-datasets", args=[team.pk]))
    assert listing.status_code == 200 and "data:adds.jsonl" in listing.content.decode()
    assert 'id="dataset-upload"' not in listing.content.decode()
    download = client.get(reverse("webapp-dataset-download", args=[team.pk, dataset.pk]))
    assert download.status_code == 200 and download.content == jsonl(ROWS)
    assert download["Content-Disposition"] == 'attachment; filename="adds.jsonl"'
    assert upload(client, team, name="mine").status_code == 403
    assert client.post(reverse("webapp-dataset-delete", args=[team.pk, dataset.pk])).status_code == 403
    assert list(Dataset.objects.values_list("name", flat=True)) == ["adds"]


def test_another_team_gets_not_found_on_every_dataset_url(client_for: Callable, eve: Any, alice: Any, team: Team):
    dataset = stored(team, actor=alice)
    client = client_for(eve)
    for name, args in [
        ("webapp-datasets", [team.pk]),
        ("webapp-dataset", [team.pk, dataset.pk]),
        ("webapp-dataset-download", [team.pk, dataset.pk]),
    ]:
        assert client.get(reverse(name, args=args)).status_code == 404, name
    assert upload(client, team, name="theirs").status_code == 404
    assert client.post(reverse("webapp-dataset-delete", args=[team.pk, dataset.pk])).status_code == 404
    assert Dataset.objects.count() == 1


def test_a_member_deletes_their_own_dataset_but_not_anothers_and_an_admin_deletes_any(
    client_for: Callable, alice: Any, bob: Any, team: Team
) -> None:
    mine, hers = stored(team, "mine", actor=bob), stored(team, "hers", actor=alice)
    client = client_for(bob)
    client.post(reverse("webapp-dataset-delete", args=[team.pk, hers.pk]))
    client.post(reverse("webapp-dataset-delete", args=[team.pk, mine.pk]))
    assert list(Dataset.objects.values_list("name", flat=True)) == ["hers"]
    client_for(alice).post(reverse("webapp-dataset-delete", args=[team.pk, hers.pk]))
    assert not Dataset.objects.exists()
    assert [a.verb for a in Activity.objects.filter(verb="deleted dataset")] == ["deleted dataset"] * 2


def test_the_run_form_suggests_the_teams_datasets_only(
    client_for: Callable, bob: Any, project: Any, team: Team, other_team: Team
) -> None:
    stored(team, "ours")
    stored(other_team, "theirs")
    page = client_for(bob).get(reverse("webapp-run-create", args=[project.pk])).content.decode()
    assert '<option value="data:ours.jsonl">' in page and "theirs" not in page


# --- the worker's side -----------------------------------------------------------------------------------


def test_the_worker_writes_the_teams_datasets_where_its_runs_look_first(
    make_run: Callable[..., Any], team: Team, other_team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(team, "adds")
    stored(other_team, "secret")
    env = trainer_env(make_run())
    assert env["PSL_DATA_ROOTS"].split(os.pathsep)[0] == str(uploads_folder(team))
    assert sorted(p.name for p in uploads_folder(team).iterdir() if not p.name.startswith(".")) == ["adds.jsonl"]
    monkeypatch.setenv("PSL_DATA_ROOTS", env["PSL_DATA_ROOTS"])  # what the trainer child resolves under
    assert [q.answer for q in load_questions(resolve_task_path("data:adds.jsonl"))] == ["5", "3", "C"]
    with pytest.raises(LookupError, match="not available"):
        resolve_task_path("data:secret.jsonl")


def test_an_unchanged_dataset_is_not_rewritten_and_a_deleted_one_disappears(team: Team) -> None:
    dataset = stored(team, "adds")
    folder = write_team_datasets(team)
    target = folder / "adds.jsonl"
    os.utime(target, (1, 1))
    write_team_datasets(team)
    assert target.stat().st_mtime == 1  # the SHA-256 beside it matched: not read again
    target.write_text("tampered\n")
    (folder / ".adds.jsonl.sha256").write_text("0" * 64)
    write_team_datasets(team)
    assert target.read_bytes() == jsonl(ROWS)  # a stale copy is replaced
    dataset.delete()
    write_team_datasets(team)
    assert list(folder.iterdir()) == []


# --- the API -------------------------------------------------------------------------------------------


def bearer(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {ApiToken.issue(user=user, name='test')[1]}"}


def test_a_script_uploads_lists_fetches_and_deletes_a_dataset_through_the_api(bob: Any, team: Team) -> None:
    client, headers = Client(enforce_csrf_checks=True), bearer(bob)
    url = reverse("api-team-datasets", args=[team.pk])
    created = client.post(url, {"name": "adds", "file": SimpleUploadedFile("a.jsonl", jsonl(ROWS))}, headers=headers)
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["task"], body["rows"], body["kinds"], body["created_by"]) == (
        "data:adds.jsonl",
        3,
        {"math": 2, "choice": 1},
        "bob",
    )
    assert client.get(url, headers=headers).json()["results"] == [body]
    one = created["Location"]
    assert client.get(one, headers=headers).json() == body
    rows = client.get(one, {"rows": "1"}, headers=headers)
    assert rows["Content-Type"].startswith("application/x-ndjson") and rows.content == jsonl(ROWS)
    assert client.delete(one, headers=headers).status_code == 204
    assert client.get(one, headers=headers).status_code == 404


def test_the_api_names_the_field_of_a_refused_upload(bob: Any, vera: Any, eve: Any, team: Team) -> None:
    client, url = Client(enforce_csrf_checks=True), reverse("api-team-datasets", args=[team.pk])
    bad = SimpleUploadedFile("a.jsonl", b'{"question": "no answer"}\n')
    refused = client.post(url, {"name": "adds", "file": bad}, headers=bearer(bob))
    assert refused.status_code == 400
    assert refused.json()["field"] == "file" and refused.json()["error"].startswith("a.jsonl: row 1")
    missing = client.post(url, {"name": "adds"}, headers=bearer(bob))
    assert (missing.status_code, missing.json()["field"]) == (400, "file")
    viewer = client.post(url, {"name": "x", "file": SimpleUploadedFile("a.jsonl", jsonl(ROWS))}, headers=bearer(vera))
    assert viewer.status_code == 403
    assert client.get(url, headers=bearer(eve)).status_code == 404
    assert not Dataset.objects.exists()
