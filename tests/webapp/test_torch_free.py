"""The web tier never imports torch or transformers: a web process stays small and starts fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import django
django.setup()
from django.urls import get_resolver
import webapp.urls, webapp.tasks, webapp.admin
get_resolver().url_patterns  # every view module imported
print(json.dumps(sorted(m for m in ("torch", "transformers") if m in sys.modules)))
"""


def test_it_loads_the_url_conf_without_torch_or_transformers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "SECRET_KEY": "k" * 20 + "-Zq8#x1!fP0vR7sLm2@bW9yT4nC6hJ3dE5gA",
        "PSL_DEMO": "0",
        "DEBUG": "0",
        "PSL_VAR_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_trainer_contract_modules_import_no_torch() -> None:
    probe = (
        "import json, sys\n"
        "import trainer.choices, trainer.config, trainer.metrics, trainer.paths, trainer.registry, "
        "trainer.data.benchmarks, trainer.data.prompts, trainer.evaluation.diversity, "
        "trainer.planner, trainer.presets\n"
        "trainer.config.TrainConfig()\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
