"""No Docker engine runs here, so the container files are validated statically."""

from __future__ import annotations

import re
from pathlib import Path

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
