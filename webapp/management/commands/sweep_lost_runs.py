"""``manage.py sweep_lost_runs``: mark runs whose worker stopped heartbeating as lost, and fail the
evaluations whose worker did (for cron)."""

from typing import Any

from django.core.management.base import BaseCommand

from webapp.evaluations.services import evaluations_sweep_lost
from webapp.worker.execution import sweep_lost_runs


class Command(BaseCommand):
    help = "Mark running runs with a stale heartbeat as lost and fail running evaluations with one."

    def handle(self, *args: Any, **options: Any) -> None:
        lost = sweep_lost_runs()
        self.stdout.write(f"marked {len(lost)} run(s) lost: {lost}" if lost else "no stale runs")
        failed = evaluations_sweep_lost()
        self.stdout.write(f"failed {len(failed)} lost evaluation(s): {failed}" if failed else "no stale evaluations")
