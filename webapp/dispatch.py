"""Messages to the workers, sent by task name.

The web tier and the services enqueue work through :func:`send` and never import
``webapp.tasks``: the tasks call the worker side (execution, the evaluation runner), which calls
the services, so importing the tasks from a service would close an import circle. The task names
live here, once; ``webapp.tasks`` registers each task under its name.
"""

from __future__ import annotations

from typing import Any

from webapp.celery import app

EXECUTE_RUN = "webapp.tasks.execute_run"
EVALUATE_CHECKPOINT = "webapp.tasks.evaluate_run_checkpoint"
PING = "webapp.tasks.ping"


def send(task: str, *, args: list[Any], queue: str) -> str:
    """Send one message to ``queue``; returns its id (what a cancel revokes).

    With ``CELERY_TASK_ALWAYS_EAGER`` (debugging only) the task runs inline instead, found in
    Celery's registry exactly as a worker finds it.
    """
    if app.conf.task_always_eager:
        app.loader.import_default_modules()  # autodiscovery registers webapp.tasks
        return str(app.tasks[task].apply(args=args, throw=True).id)
    return str(app.send_task(task, args=args, queue=queue).id)


def eager() -> bool:
    """Tasks run inline (``CELERY_TASK_ALWAYS_EAGER``, debugging only): there is no broker to reconcile."""
    return bool(app.conf.task_always_eager)


def waiting(queue: str) -> int:
    """How many messages wait on ``queue``, not yet taken by a worker (Redis or the filesystem broker)."""
    with app.connection_or_acquire() as conn:  # pooled: one connection for every round
        # Not passive: Redis drops an empty list, and a passive declare of it fails with 404.
        return int(conn.default_channel.queue_declare(queue=queue).message_count)


def revoke(task_id: str) -> None:
    """Ask the workers to drop a message that has not started yet (brokers with remote control only)."""
    app.control.revoke(task_id)
