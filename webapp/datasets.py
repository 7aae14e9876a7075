"""A team's uploaded datasets: validated by the trainer's own reader, stored in the database, named
``data:<name>.jsonl`` by the team's runs and evaluations (the worker writes them out before a run:
``webapp.worker.datasets``).

Who may do what (tested in tests/webapp/test_datasets.py):

=====================  ======  ======  =====  ========
action                 viewer  member  admin  outsider
=====================  ======  ======  =====  ========
list, preview, fetch   yes     yes     yes    404
upload                 403     yes     yes    404
delete                 403     own     yes    404
=====================  ======  ======  =====  ========
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction

from trainer.data.datasets import Question, load_questions
from webapp.models import Dataset, Membership, Role, Team
from webapp.services import FieldError, ServiceError
from webapp.teams import team_activity

SUFFIXES = (".jsonl", ".json")
# One file name component a run can name (trainer.references): no hidden files, no separators.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]{0,79}$")
PREVIEW_ROWS = 5


def max_bytes() -> int:
    return int(settings.PSL_DATASET_MAX_MB) << 20


def check_name(name: str) -> str:
    """The dataset name without a ``.jsonl`` suffix; FieldError("name") when a run could not name it."""
    name = name.strip().removesuffix(".jsonl")
    if not NAME.match(name) or name.endswith("."):
        raise FieldError(
            "name", "use up to 80 letters, digits and . _ - + = (starting with a letter or digit), no slashes"
        )
    return name


def read_upload(upload: IO[bytes], *, filename: str) -> tuple[bytes, list[Question]]:
    """The upload as JSONL bytes and its questions, read by the trainer's own reader (the rules a
    run will apply); FieldError("file") naming the row and the problem otherwise, never a server path."""
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise FieldError("file", f"upload a .jsonl file (one JSON object per line) or a .json list, not {suffix!r}")
    raw = upload.read(max_bytes() + 1)
    if len(raw) > max_bytes():
        raise FieldError("file", f"the file is larger than {settings.PSL_DATASET_MAX_MB} MB")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(raw)
        try:
            questions = load_questions(path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FieldError("file", str(exc).replace(str(path), filename)) from None
    if not questions:
        raise FieldError("file", f"{filename} has no rows")
    if suffix == ".json":  # stored as JSONL, the one format the worker writes
        rows = json.loads(raw.decode("utf-8"))
        raw = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    return raw, questions


def dataset_upload(
    *, team: Team, actor: Any, name: str, upload: IO[bytes], filename: str, description: str = ""
) -> Dataset:
    """Validate and store an upload as ``team``'s dataset ``name`` (FieldError on the field at fault)."""
    name = check_name(name)
    if Dataset.objects.filter(team=team, name=name).exists():
        taken = f"this team already has a dataset named {name}; datasets are immutable: pick a new name"
        raise FieldError("name", taken)
    raw, questions = read_upload(upload, filename=filename)
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                team=team,
                name=name,
                description=description.strip()[:300],
                content=gzip.compress(raw, compresslevel=6),
                sha256=hashlib.sha256(raw).hexdigest(),
                rows=len(questions),
                size_bytes=len(raw),
                kinds=dict(Counter(q.kind for q in questions)),
                created_by=actor,
            )
    except IntegrityError:  # the same name uploaded twice at once
        raise FieldError("name", f"this team already has a dataset named {name}") from None
    team_activity(team=team, actor=actor, verb="uploaded dataset", target=dataset.reference)
    return dataset


def dataset_delete(*, dataset: Dataset, actor: Any, membership: Membership) -> None:
    """Delete a dataset (its uploader or a team admin). Runs that named it keep their task name; a
    worker removes the file before the team's next run, and a rerun then says it is not available."""
    if not (membership.can(Role.ADMIN) or dataset.created_by_id == actor.pk):
        raise ServiceError("only its uploader or a team admin may delete a dataset")
    reference = dataset.reference
    dataset.delete()
    team_activity(team=dataset.team, actor=actor, verb="deleted dataset", target=reference)


def dataset_jsonl(dataset: Dataset) -> bytes:
    return gzip.decompress(bytes(dataset.content))


def dataset_preview(dataset: Dataset, *, rows: int = PREVIEW_ROWS) -> list[Question]:
    """The first ``rows`` questions as a run will see them (prompt template applied); only the
    head of the stored file is decompressed, not the whole of it."""
    lines: list[bytes] = []
    found = 0
    with gzip.GzipFile(fileobj=io.BytesIO(bytes(dataset.content))) as stored:
        for line in stored:  # blank lines kept: a question's default id counts the file's rows
            lines.append(line)
            found += bool(line.strip())
            if found == rows:
                break
    head = b"".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / dataset.file_name
        path.write_bytes(head)
        return load_questions(path)
