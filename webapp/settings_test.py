"""Test settings: the real settings plus speed-only overrides.

The database and broker still come from DATABASE_URL / CELERY_BROKER_URL, so the same suite
runs on SQLite + filesystem locally and on PostgreSQL + Redis in CI.
"""

import os
from pathlib import Path

os.environ.setdefault("PSL_DEMO", "1")
os.environ.setdefault("PSL_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from webapp.env import env_bool, env_int
from webapp.settings import *

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WANDB_MODE = "offline"

# Real worker processes in the execution tests must see the test database: on SQLite that
# needs a file instead of pytest-django's default in-memory database.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
# Faster failure detection for the crash-recovery tests; still overridable from the environment.
PSL_HEARTBEAT_SECONDS = env_int("PSL_HEARTBEAT_SECONDS", 2, minimum=1)
PSL_LOST_AFTER_SECONDS = env_int("PSL_LOST_AFTER_SECONDS", 8, minimum=5)
PSL_DISPATCH_SECONDS = env_int("PSL_DISPATCH_SECONDS", 2, minimum=1)
PSL_CANCEL_GRACE_SECONDS = env_int("PSL_CANCEL_GRACE_SECONDS", 3, minimum=1)
# A succeeded run queues its evaluation on the same worker; only the tests of that feature want it.
PSL_EVAL_AFTER_TRAINING = env_bool("PSL_EVAL_AFTER_TRAINING", False)
# Worker processes started by the tests get a folder per test through the environment.
PSL_RUNS_DIR = Path(os.environ.get("PSL_RUNS_DIR") or VAR_DIR / "runs")
# Dense system samples, so a short test run has several.
PSL_SYSTEM_METRICS_SECONDS = env_int("PSL_SYSTEM_METRICS_SECONDS", 1, minimum=1)
