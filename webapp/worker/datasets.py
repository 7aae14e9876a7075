"""A team's uploaded datasets on the worker host: written into the team's uploads folder before one
of its runs or evaluations starts, so ``data:<name>.jsonl`` resolves there (trainer.references).

The folder mirrors the database: a dataset is written once (its SHA-256 kept beside it, so a later
run reads nothing from the database unless the dataset changed) and a deleted one disappears.
Writes go through a temporary file and a rename, so two workers on one host never expose half a file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

from webapp.models import Dataset, Team
from webapp.references import team_roots, uploads_folder


def _stamp(folder: Path, file_name: str) -> Path:
    return folder / f".{file_name}.sha256"  # hidden: no run can name it


def write_team_datasets(team: Team) -> Path:
    """Make ``team``'s uploads folder hold exactly its datasets; returns the folder."""
    folder = uploads_folder(team)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {d.file_name: d for d in Dataset.objects.filter(team=team).only("pk", "name", "sha256")}
    for file_name, dataset in wanted.items():
        target, stamp = folder / file_name, _stamp(folder, file_name)
        if target.is_file() and stamp.is_file() and stamp.read_text() == dataset.sha256:
            continue
        content = gzip.decompress(bytes(Dataset.objects.values_list("content", flat=True).get(pk=dataset.pk)))
        if hashlib.sha256(content).hexdigest() != dataset.sha256:
            raise RuntimeError(f"dataset {dataset.reference} is corrupt in the database (SHA-256 mismatch)")
        tmp = folder / f".{file_name}.{os.getpid()}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target)
        stamp.write_text(dataset.sha256)
    for path in folder.glob("*.jsonl"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)
            _stamp(folder, path.name).unlink(missing_ok=True)
    return folder


def prepared_team_roots(team: Team) -> dict[str, str]:
    """``team_roots`` for a child about to start on this host, with the team's uploads written out."""
    write_team_datasets(team)
    return team_roots(team)
