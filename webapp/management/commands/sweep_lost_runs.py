"""``manage.py sweep_lost_runs``: mark runs whose worker stopped heartbeating as lost (for cron)."""

from typing import Any

from django.core.management.base import BaseCommand

from webapp.worker.execution import sweep_lost_runs


class Command(BaseCommand):
    help = "Mark running runs with a stale heartbeat as lost."

    def handle(self, *args: Any, **options: Any) -> None:
        lost = sweep_lost_runs()
        self.stdout.write(f"marked {len(lost)} run(s) lost: {lost}" if lost else "no stale runs")
