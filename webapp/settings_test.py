"""Test settings: the real settings plus speed-only overrides.

The database and broker still come from DATABASE_URL / CELERY_BROKER_URL, so the same suite
runs on SQLite + filesystem locally and on PostgreSQL + Redis in CI.
"""

import os

os.environ.setdefault("PSL_DEMO", "1")
os.environ.setdefault("PSL_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from webapp.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WANDB_MODE = "offline"
