"""The peers each benchmark prints its figures next to: raw COPY, and MLflow's SQL store.

MLflow is not a project dependency: ``mlflow_python`` installs it (pinned) into its own
virtualenv, ``var/.venv-mlflow``, through pip and the package index this machine is configured
with, and ``bench/mlflow_peer.py`` runs inside it against a database of its own on the same
PostgreSQL cluster (``mlflow_database``), so both stores share the machine and its load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MLFLOW_VENV = Path(os.environ.get("PSL_MLFLOW_VENV", ROOT / "var" / ".venv-mlflow"))
MLFLOW_PINS = ["mlflow==3.17.2", "psycopg2-binary==2.9.13"]


def mlflow_python() -> Path:
    """The MLflow virtualenv's interpreter, installed on first use (about a minute)."""
    python = MLFLOW_VENV / "bin" / "python"
    ok = (
        python.exists()
        and subprocess.run([python, "-c", "import mlflow, psycopg2"], capture_output=True).returncode == 0
    )
    if not ok:
        print(f"installing {' '.join(MLFLOW_PINS)} into {MLFLOW_VENV} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", MLFLOW_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *MLFLOW_PINS], check=True)
        print(f"installed in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return python


@contextmanager
def mlflow_database(connection: Any, suffix: str) -> Iterator[str]:
    """A fresh database next to ours for MLflow's store; yields its SQLAlchemy URL, dropped after."""
    import psycopg

    params = connection.get_connection_params()
    name = f"{connection.settings_dict['NAME']}_{suffix}_mlflow"
    admin = psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.execute(f'CREATE DATABASE "{name}"')
    where = f"{params['host']}:{params.get('port') or 5432}"
    url = f"postgresql+psycopg2://{params['user']}:{params['password']}@{where}/{name}"
    try:
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def mlflow(command: str, db: str, **options: Any) -> dict[str, Any]:
    """Run one bench/mlflow_peer.py command in MLflow's virtualenv; returns its JSON result."""
    args = [str(mlflow_python()), str(ROOT / "bench" / "mlflow_peer.py"), command, "--db", db]
    for name, value in options.items():
        for v in value if isinstance(value, list) else [value]:
            args += [f"--{name.replace('_', '-')}", str(v)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": db, "GIT_PYTHON_REFRESH": "quiet"}
    # In a scratch folder: MLflow puts artifacts (log_table's files) under ./mlruns of its cwd.
    with tempfile.TemporaryDirectory(prefix="mlflow-peer-") as scratch:
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=scratch, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mlflow_peer {command} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pg_copy(connection: Any, table: str, columns: list[str], rows: Any) -> float:
    """Raw psycopg COPY of ``rows`` into ``table``: the practical write limit; returns seconds."""
    t0 = time.perf_counter()
    with connection.cursor() as cur, cur.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - t0


def ratio(ours: float, theirs: float) -> str:
    """ours / theirs with two significant digits at least (a 0.004× must not print as 0.00×)."""
    if not theirs:
        return "n/a"
    r = ours / theirs
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"
