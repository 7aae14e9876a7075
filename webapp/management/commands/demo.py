"""``manage.py demo``: the whole product on embedded defaults, with a demo user and demo runs.

Migrates, creates the demo team/project/user (printing the credentials), starts the web server
one run worker and the dispatcher, submits demo runs and prints the URL. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

DEMO_USER = "demo"
DEMO_PASSWORD = "policy-split-demo"


class Command(BaseCommand):
    help = "Start the product with a demo user and demo runs (embedded SQLite + filesystem broker by default)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PSL_DEMO_PORT", "8000")))
        parser.add_argument("--no-runs", action="store_true", help="do not submit the demo runs")
        parser.add_argument("--exit-after", type=float, default=0, help="stop after N seconds (for tests)")
        parser.add_argument("--model", default="", help="the demo runs' model instead of SmolLM2 (tests: tiny-random)")

    def handle(self, *args: Any, port: int, no_runs: bool, exit_after: float, model: str, **options: Any) -> None:
        call_command("migrate", "--noinput", verbosity=0)
        project, created_user = _demo_objects()
        self.stdout.write("Preparing the bundled models (first time: ~1 minute)…")
        subprocess.run(
            [sys.executable, "-m", "trainer", "prepare-models", "tiny-random", "smollm2-135m"],
            check=True,
            cwd=settings.BASE_DIR,
        )
        signal.signal(signal.SIGTERM, _as_ctrl_c)
        children = [self._web(port), self._worker(), self._dispatcher()]
        try:
            if not no_runs and not project.runs.exists():
                _submit_demo_runs(project, model=model)
            url = f"http://127.0.0.1:{port}/projects/{project.pk}/runs/"
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nPolicy Split Lab is running: {url}\n"
                    f"  user: {DEMO_USER}   password: {DEMO_PASSWORD}{'  (created)' if created_user else ''}\n"
                    f"  database: {settings.DATABASES['default']['NAME']}   broker: {settings.CELERY_BROKER_URL}\n"
                    "Press Ctrl-C to stop the web server and the worker.\n"
                )
            )
            self._wait(children, exit_after)
        except KeyboardInterrupt:
            pass
        finally:
            _stop(children)
            self.stdout.write("Stopped.")

    def _web(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "webapp.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--access-logfile",
                "-",
                "--log-level",
                "warning",
            ],
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )

    def _worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "webapp",
                "worker",
                "--pool=solo",
                "-Q",
                "cpu",
                "-n",
                "demo-cpu@%h",
                "-l",
                "warning",
            ],
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )

    def _dispatcher(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "manage.py", "dispatcher"], cwd=settings.BASE_DIR, start_new_session=True
        )

    def _wait(self, children: list[subprocess.Popen[bytes]], exit_after: float) -> None:
        started = time.monotonic()
        while all(c.poll() is None for c in children):
            if exit_after and time.monotonic() - started > exit_after:
                return
            time.sleep(0.5)
        dead = [c.args[2] if isinstance(c.args, list) else c.args for c in children if c.poll() is not None]
        self.stderr.write(f"a child process exited unexpectedly: {dead}")


def _demo_objects() -> tuple[Any, bool]:
    from webapp.models import Membership, Project, Role, Team

    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=DEMO_USER)
    if created:
        user.set_password(DEMO_PASSWORD)
        user.is_staff = user.is_superuser = True
        user.save()
    team, _ = Team.objects.get_or_create(slug="demo-lab", defaults={"name": "Demo Lab"})
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.ADMIN})
    project, _ = Project.objects.get_or_create(
        team=team,
        slug="policy-split-demo",
        defaults={"name": "Policy Split demo", "description": "Demo runs on the built-in arithmetic task."},
    )
    return project, created


DEMO_PRESET = "ps-smollm2-demo"


def _submit_demo_runs(project: Any, *, model: str = "") -> None:
    """The demo's runs, first to start first (queue priorities): a short Policy Split run on the real
    SmolLM2 (trainer/presets/ps-smollm2-demo.yaml: the reward moves within minutes on 2 cores), the
    same recipe under GRPO to compare it with, then a longer Policy Split run. ``model`` replaces
    SmolLM2 (the demo's own test trains tiny-random)."""
    from trainer.presets import load_preset
    from webapp.models import Membership
    from webapp.services import run_create

    user = Membership.objects.filter(team=project.team).first().user  # type: ignore[union-attr]
    overrides = {"model": model} if model else {}
    quick = load_preset(DEMO_PRESET).config(seed=1, **overrides)
    label = "SmolLM2-135M" if quick.model == "smollm2-135m" else quick.model
    runs = [
        (quick, f"demo: Policy Split, {label} (quick)", "high"),
        (quick.replace(algorithm="grpo", n=8), f"demo: GRPO, {label} (quick)", "normal"),
        (quick.replace(steps=60, checkpoint_every=20), f"demo: Policy Split, {label} (60 steps)", "low"),
    ]
    for config, name, priority in runs:
        run_create(project=project, user=user, config=config, name=name, tags=["demo"], priority=priority)


def _as_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM (`kill`, a service manager, a container stop) stops the demo the way Ctrl-C does, so
    its web server, worker and dispatcher stop with it instead of running on without a parent."""
    raise KeyboardInterrupt


# A worker stops its trainer at the next safe point (after the current step) and requeues the run.
STOP_PATIENCE_SECONDS = 120


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    print(
        "Stopping: a run in training is checkpointed and put back in its queue for the next start "
        "(up to a training step; Ctrl-C again to kill at once).",
        flush=True,
    )
    deadline = time.monotonic() + STOP_PATIENCE_SECONDS
    try:
        for child in children:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
