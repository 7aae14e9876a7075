"""Evaluations of a run's checkpoints, split by role.

- ``services``: create, enqueue, schedule after training, store a report, fail, the worker's claim and
  heartbeat, the sweep of lost evaluations (the workflows).
- ``runner``: the worker side, which runs the evaluator as a child process and stores its reports.
- ``selectors``: the reads (evaluable steps, per-question counts, questions one mode alone solved,
  running evaluations with a stale heartbeat).
- ``presentation``: the tables and charts of the evaluations page, numbers formatted for display.

Nothing is imported here, so a view that only reads does not load the worker side.
"""
