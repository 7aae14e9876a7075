"""Shared fixtures: personas that make permission tests read like sentences.

Alice is an admin of the Lab team, Bob a member, Vera a viewer; Eve belongs to another team
(Rivals) and must never see Lab's objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

pytest_plugins = ["tests.workers"]  # the start_worker fixture (real Celery worker processes)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("PSL_TORCH_THREADS", "2")


@pytest.fixture
def team(db: Any) -> Any:
    from webapp.models import Team

    return Team.objects.create(name="Lab", slug="lab")


@pytest.fixture
def other_team(db: Any) -> Any:
    from webapp.models import Team

    return Team.objects.create(name="Rivals", slug="rivals")


def _user(django_user_model: Any, team: Any, username: str, role: str) -> Any:
    from webapp.models import Membership

    user = django_user_model.objects.create_user(username=username, password="password-" + username)
    Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def alice(django_user_model: Any, team: Any) -> Any:
    return _user(django_user_model, team, "alice", "admin")


@pytest.fixture
def bob(django_user_model: Any, team: Any) -> Any:
    return _user(django_user_model, team, "bob", "member")


@pytest.fixture
def vera(django_user_model: Any, team: Any) -> Any:
    return _user(django_user_model, team, "vera", "viewer")


@pytest.fixture
def eve(django_user_model: Any, other_team: Any) -> Any:
    return _user(django_user_model, other_team, "eve", "admin")


@pytest.fixture
def project(team: Any) -> Any:
    from webapp.models import Project

    return Project.objects.create(team=team, name="Entropy", slug="entropy")


@pytest.fixture
def other_project(other_team: Any) -> Any:
    from webapp.models import Project

    return Project.objects.create(team=other_team, name="Secret", slug="secret")


@pytest.fixture
def make_run(project: Any, alice: Any) -> Callable[..., Any]:
    """Create a run row directly (no enqueue): make_run(status="running", eta=0.1, project=...)."""
    from trainer.config import TrainConfig
    from webapp.models import Run

    def factory(*, project: Any = project, name: str = "", status: str = "queued", **config: Any) -> Any:
        cfg = TrainConfig(**config)
        return Run.objects.create(
            project=project,
            name=name or f"run {Run.objects.count() + 1}",
            config=cfg.to_dict(),
            algorithm=cfg.algorithm,
            model_name=cfg.model,
            seed=cfg.seed,
            status=status,
            total_steps=cfg.steps,
            created_by=alice,
        )

    return factory


@pytest.fixture
def client_for(client: Any) -> Callable[[Any], Any]:
    """Log the test client in as a persona: client_for(alice).get(...)."""

    def login(user: Any) -> Any:
        client.force_login(user)
        return client

    return login
