"""The worker host's side of a run: claim it, run the trainer in a child process, and turn what it
prints into rows (metrics, samples, logs, checkpoints, system metrics), a W&B mirror and halving stops.

Celery tasks (webapp/tasks.py) are the only entry points; nothing here renders a page.
"""
