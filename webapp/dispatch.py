"""Messages to the workers, sent by task name.

The web tier and the services enqueue work through :func:`send` and never import
``webapp.tasks``: the tasks call the worker side (execution, the evaluation runner), which calls
the services, so importing the tasks from a service would close an import circle. The task names
live here, once; ``webapp.tasks`` registers each task under its name.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class Waiting:
    """A task message waiting on a queue: its task name and its arguments."""

    task: str
    args: list[Any]


def waiting(queue: str) -> list[Waiting] | None:
    """The task messages waiting on ``queue``, not yet taken by a worker; None where the broker
    cannot be read without consuming (transports other than Redis and the filesystem)."""
    with app.connection_or_acquire() as conn:  # pooled: one connection for every round
        channel: Any = conn.default_channel
        if conn.transport.driver_type == "redis":
            keys = [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]
            raw = [item for key in keys for item in channel.client.lrange(key, 0, -1)]
        elif conn.transport.driver_type == "filesystem":
            raw = _filesystem_messages(Path(channel.data_folder_in), queue)
        else:
            return None
    return [m for m in map(_waiting, raw) if m is not None]


def depth(queue: str) -> int:
    """How many messages of any task wait on ``queue`` (every transport)."""
    with app.connection_or_acquire() as conn:
        # Not passive: Redis drops an empty list, and a passive declare of it fails with 404.
        return int(conn.default_channel.queue_declare(queue=queue).message_count)


def _filesystem_messages(folder: Path, queue: str) -> list[bytes]:
    out = []
    for path in sorted(folder.glob(f"*.{queue}.msg")):
        with contextlib.suppress(OSError):  # a worker took it meanwhile
            out.append(path.read_bytes())
    return out


def _waiting(raw: bytes | str) -> Waiting | None:
    """kombu's stored form of a message: JSON with the task in the headers and the body base64 JSON."""
    try:
        payload = json.loads(raw)
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return Waiting(str(payload["headers"]["task"]), list(args))
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # not a task message of ours


def revoke(task_id: str) -> None:
    """Ask the workers to drop a message that has not started yet (brokers with remote control only)."""
    app.control.revoke(task_id)
