"""The data model: teams own projects, projects hold runs, runs stream metrics and samples.

Access control is by team membership (viewer < member < admin); every read goes through the
``for_user`` query sets so that a member of team X never sees team Y's objects.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
from array import array
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from trainer.choices import DEFAULT_PRIORITY, PRIORITIES
from trainer.references import DATA_PREFIX, run_ref


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


class Team(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def can(self, role: str) -> bool:
        """True if this membership's role is at least ``role``."""
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class ProjectQuerySet(models.QuerySet["Project"]):
    def for_user(self, user: Any, *, role: str = Role.VIEWER) -> ProjectQuerySet:
        roles = [r for r, rank in ROLE_RANK.items() if rank >= ROLE_RANK[Role(role)]]
        return self.filter(team__memberships__user=user, team__memberships__role__in=roles)


class Project(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="unique_project_slug")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("webapp-run-list", args=[self.pk])


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    LOST = "lost", "Lost"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST)
# Runs a study leaves out of its aggregates unless someone includes them by hand.
UNTRUSTED_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST)


class RunQuerySet(models.QuerySet["Run"]):
    def for_user(self, user: Any, *, role: str = Role.VIEWER) -> RunQuerySet:
        return self.filter(project__in=Project.objects.for_user(user, role=role))

    def stale(self, *, older_than: timedelta) -> RunQuerySet:
        """Running runs whose worker stopped sending heartbeats (used by the lost-run sweep)."""
        cutoff = timezone.now() - older_than
        return self.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)


class SummaryKind(models.TextChoices):
    """How a run's curve becomes the one number of a final-metrics table (webapp.review.reports.SummaryRule)."""

    MEAN_LAST = "mean_last", "Mean of the last k logged steps"
    LAST = "last", "Last logged value"


DEFAULT_SUMMARY_K = 5
"""k of the default summary: one step is noise (a run at 0.25 on step 3 may log 0 on step 4)."""


class Study(models.Model):
    """An ablation study: a named group of runs and the factor(s) varied across them."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="studies")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # {"eta": [0.01, 0.03, 0.1], "rollout_sharing": [true, false], "seed": [1, 2, 3]}
    factors = models.JSONField(default=dict, blank=True)
    baseline = models.ForeignKey("Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Per-run choices that differ from the default rule (UNTRUSTED_STATUSES are out, the rest in):
    # {"<run id>": "include" | "exclude"}.
    run_choices = models.JSONField(default=dict, blank=True)
    # How the runs were chosen beyond a grid: {"kind": "random", "space": {"lr": "loguniform(1e-6, 1e-4)"},
    # "samples": 8, "seed": 0} and/or {"halving": {"metric": "train/reward", "rungs": [2, 4], "mode": "max",
    # "reduction": 2}} (trainer.search.Halving); {} for a plain grid.
    search = models.JSONField(default=dict, blank=True)
    # The final-metrics table's summary of each run's curve (the page and the exports say which).
    summary_kind = models.CharField(max_length=10, choices=SummaryKind.choices, default=SummaryKind.MEAN_LAST)
    summary_k = models.PositiveSmallIntegerField(default=DEFAULT_SUMMARY_K)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("webapp-study-detail", args=[self.pk])


class Tag(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=50)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_tag_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Run(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200)
    # The full trainer.config.TrainConfig as JSON: every run can be reproduced from it.
    config = models.JSONField(default=dict)
    algorithm = models.CharField(max_length=32, db_index=True)
    model_name = models.CharField(max_length=200)
    seed = models.IntegerField(default=0)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    queue = models.CharField(max_length=50, default="cpu")
    gpus = models.PositiveSmallIntegerField(default=0)
    host = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="runs")
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Progress in optimizer steps of the trainer (not counting evaluation).
    step = models.IntegerField(default=0)
    total_steps = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    # Each resume is a new attempt of the same run; step numbering continues across attempts.
    attempt = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=64, blank=True)
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    tags = models.ManyToManyField(Tag, blank=True, related_name="runs")
    # Last value of every metric key, maintained by ingestion: the runs list sorts on it in one query.
    summary = models.JSONField(default=dict, blank=True)
    last_checkpoint_step = models.IntegerField(null=True, blank=True)
    last_checkpoint_path = models.CharField(max_length=500, blank=True)
    wandb_enabled = models.BooleanField(default=False)
    wandb_run_id = models.CharField(max_length=64, blank=True)
    # Queue order of record (webapp.selectors.queued_runs): priority (the index of its name in
    # trainer.choices.PRIORITIES, 0 = high), then queue_rank (set when queued, swapped to reorder).
    priority = models.PositiveSmallIntegerField(default=PRIORITIES.index(DEFAULT_PRIORITY))
    queue_rank = models.BigIntegerField(default=0)
    # An API client's Idempotency-Key and the SHA-256 of its request (docs/api.md): a retried POST
    # answers this run instead of creating another; the same key with another body is refused.
    idempotency_key = models.CharField(max_length=200, blank=True, default="")
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, default="")

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Runs list and API: the default order (newest first, id breaking ties) read straight
            # from the index, so a page is a top-N index scan, not a sort of every run with its JSON.
            models.Index(fields=["project", "-created_at", "-id"], name="run_project_created"),
            # Lost-run sweep scans running runs by heartbeat.
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
            # A pool's queue in serving order.
            models.Index(
                fields=["queue", "priority", "queue_rank", "id"],
                condition=models.Q(status="queued"),
                name="run_queued_order",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_run_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("webapp-run-detail", args=[self.pk])

    @property
    def priority_name(self) -> str:
        return PRIORITIES[self.priority]

    @property
    def has_default_priority(self) -> bool:
        return self.priority_name == DEFAULT_PRIORITY

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def can_resume(self) -> bool:
        return self.status in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST) and self.step < self.total_steps

    @property
    def progress(self) -> float:
        """Fraction of optimizer steps done, in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def time_left(self) -> timedelta | None:
        """Remaining time estimated from the pace of the current attempt."""
        elapsed = self.duration()
        if not elapsed or not self.is_active or self.step <= 0 or self.total_steps <= self.step:
            return None
        done_this_attempt = self.step - (self.config.get("_resumed_from_step") or 0)
        if done_this_attempt <= 0:
            return None
        return elapsed / done_this_attempt * (self.total_steps - self.step)


class MetricPoint(models.Model):
    """One value of one metric key at one step: ingestion upserts on (run, key, step)."""

    # No index of its own: the unique (run, key, step) index leads with the run, so a run's points
    # (and its cascade delete) are found through it; a run_id-only index would only slow ingestion
    # and tempt the planner into reading a run's every key.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics", db_index=False)
    key = models.CharField(max_length=80)
    step = models.IntegerField()
    value = models.FloatField()

    class Meta:
        constraints = [
            # Also the index of every raw read (WHERE run_id = ? AND key = ? AND step BETWEEN ? AND ?
            # ORDER BY step). On PostgreSQL migration 0002 builds it with INCLUDE (value), so those
            # reads are index-only scans (declared plainly here: SQLite would drop a covering one).
            models.UniqueConstraint(fields=["run", "key", "step"], name="unique_metric_point"),
        ]

    def __str__(self) -> str:
        return f"{self.key}@{self.step}={self.value}"


ROLLUP_FANOUT = 4  # a bucket of level L covers ROLLUP_FANOUT**L steps
ROLLUP_LEVELS = 9  # levels 1…9: buckets of 4 … 262,144 steps


class MetricRollup(models.Model):
    """The min/max envelope of one metric line per bucket of steps, maintained by ingestion.

    Level 0 is the whole line (one row per run and key: its size and step range); level L ≥ 1 cuts
    the line into buckets of ``ROLLUP_FANOUT**L`` steps (bucket = step // 4**L). Each row keeps the
    lowest and the highest point of its bucket with their steps (earliest step on ties), so a chart
    built from rollups keeps every spike and dip that the raw points have. A read of a long range
    scans at most ``ROLLUP_FANOUT`` rows per bucket it draws, however many points the line has.
    PostgreSQL only: elsewhere charts bucket the raw points.
    """

    # The natural key is the primary key: no surrogate id index to maintain on every upsert.
    pk = models.CompositePrimaryKey("run", "key", "level", "bucket")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=80)
    level = models.PositiveSmallIntegerField()
    bucket = models.IntegerField()
    n = models.BigIntegerField()
    min_step = models.IntegerField()
    max_step = models.IntegerField()
    lo_value = models.FloatField()
    lo_step = models.IntegerField()
    hi_value = models.FloatField()
    hi_step = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.key} L{self.level}#{self.bucket} [{self.lo_value}, {self.hi_value}] n={self.n}"


def pack_pieces(pieces: list[str], response: str = "") -> tuple[str, bytes]:
    """Token pieces as (their concatenation, their lengths): a format byte (H = uint16, I = uint32)
    then the lengths in code points, little-endian. When the pieces spell the response exactly (the
    usual case) the text is not stored twice: it comes back "" and the format byte is lower case."""
    lengths = [len(p) for p in pieces]
    code = "H" if not lengths or max(lengths) < 1 << 16 else "I"
    packed = array(code, lengths)
    if sys.byteorder != "little":
        packed.byteswap()
    text = "".join(pieces)
    if text and text == response:
        return "", code.lower().encode() + packed.tobytes()
    return text, code.encode() + packed.tobytes()


def unpack_pieces(text: str, lengths: bytes, response: str = "") -> list[str]:
    if not lengths:
        return []
    code = chr(lengths[0])
    if code.islower():
        text = response
    packed = array(code.upper())
    packed.frombytes(lengths[1:])
    if sys.byteorder != "little":
        packed.byteswap()
    pieces, at = [], 0
    for n in packed:
        pieces.append(text[at : at + n])
        at += n
    return pieces


def pack_floats(values: list[float]) -> bytes:
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_floats(data: bytes) -> list[float]:
    packed = array("f")
    packed.frombytes(data)
    if sys.byteorder != "little":
        packed.byteswap()
    return [round(v, 4) for v in packed]


TOKEN_COLUMNS = ("token_text", "token_lengths", "surprisal_f32")
SAMPLE_VALUE_FIELDS = (
    "step", "question_id", "mode", "context", "index", "prompt", "answer", "response", "reward", "advantage",
    "length", "entropy",
)  # fmt: skip
"""A sample's own values, in the order ingestion writes them and the API shows them (the packed token
arrays, TOKEN_COLUMNS, follow them in the database)."""


class SampleQuerySet(models.QuerySet["Sample"]):
    def with_tokens(self) -> SampleQuerySet:
        """Also load the heatmap columns (the side-by-side heatmap, ?tokens=1 of the API)."""
        return self.defer(None)


class SampleManager(models.Manager["Sample"]):
    """Samples without their heatmap columns unless asked: pages, lists and aggregates stay small."""

    def get_queryset(self) -> SampleQuerySet:
        return SampleQuerySet(self.model, using=self._db).defer(*TOKEN_COLUMNS)

    def with_tokens(self) -> SampleQuerySet:
        return self.get_queryset().with_tokens()


class Mode(models.TextChoices):
    NORMAL = "normal", "Normal"
    HE = "he", "High-entropy"


MODE_SHORT = {Mode.NORMAL.value: "N", Mode.HE.value: "HE"}  # the modes' badges (side by side)


class Sample(models.Model):
    """One generated response, as the trainer emitted it (untrusted text: always escaped)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="samples")
    step = models.IntegerField()
    question_id = models.CharField(max_length=100)
    # Which mode generated the response, and under which context it is shown/trained.
    mode = models.CharField(max_length=10, choices=Mode.choices)
    context = models.CharField(max_length=10, choices=Mode.choices)
    index = models.PositiveSmallIntegerField(default=0)
    prompt = models.TextField()
    answer = models.TextField(blank=True)
    response = models.TextField()
    reward = models.FloatField()
    advantage = models.FloatField(null=True, blank=True)
    length = models.IntegerField()
    entropy = models.FloatField(null=True, blank=True)
    # The heatmap's per-token data, packed (see pack_tokens): the token strings concatenated, their
    # lengths as uint16/uint32, and the surprisal (nats) as float32. Several times smaller than
    # JSON arrays and never parsed by the database; deferred unless a query asks .with_tokens().
    token_text = models.TextField(blank=True, default="")
    token_lengths = models.BinaryField(blank=True, default=b"")
    surprisal_f32 = models.BinaryField(blank=True, default=b"")

    objects = SampleManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step", "question_id", "mode", "context", "index"], name="unique_sample"
            ),
        ]
        indexes = [models.Index(fields=["run", "step", "question_id"], name="sample_run_step_q")]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step}/{self.question_id}/{self.mode}#{self.index}"

    @property
    def is_correct(self) -> bool:
        return self.reward > 0.5

    @property
    def tokens(self) -> list[str]:
        """Per-token text pieces (the heatmap's; loads the packed columns if they were deferred)."""
        return unpack_pieces(self.token_text, bytes(self.token_lengths), self.response)

    @tokens.setter
    def tokens(self, pieces: list[str]) -> None:
        self.token_text, self.token_lengths = pack_pieces(pieces, self.response)

    @property
    def surprisal(self) -> list[float]:
        """Per-token surprisal in nats, rounded to 4 decimals as the trainer reports it."""
        return unpack_floats(bytes(self.surprisal_f32))

    @surprisal.setter
    def surprisal(self, values: list[float]) -> None:
        self.surprisal_f32 = pack_floats(values)


class Checkpoint(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.IntegerField()
    path = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="unique_checkpoint")]
        ordering = ["step"]

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.step}"

    @property
    def reference(self) -> str:
        """How a user names this checkpoint (as a model, in evaluations): never its path on the worker."""
        return run_ref(self.run_id, self.step)


class RunLog(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs")
    attempt = models.PositiveIntegerField(default=0)
    seq = models.IntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, default="info")
    # trainer.choices.LOG_SOURCES: the trainer's log events, or its captured stdout/stderr
    # (webapp.worker.run_output); each source numbers its lines of an attempt from 0.
    source = models.CharField(max_length=10, default="trainer")
    message = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "attempt", "source", "seq"], name="unique_run_log_line"),
        ]
        # Lines of one attempt in the order the worker stored them (both sources interleaved).
        ordering = ["attempt", "id"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"


class EvalStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


# What the evaluation runner records in Evaluation.settings for itself: server paths, never shown.
EVAL_WORKER_SETTINGS = frozenset({"model", "folder"})


class Evaluation(models.Model):
    """One benchmark evaluated on one checkpoint of a run, in one mode."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="evaluations")
    step = models.IntegerField(help_text="checkpoint step (0 = the untrained model)")
    benchmark = models.CharField(max_length=100)
    mode = models.CharField(max_length=10, choices=Mode.choices)
    status = models.CharField(max_length=10, choices=EvalStatus.choices, default=EvalStatus.QUEUED)
    settings = models.JSONField(default=dict, blank=True)  # temperature, top_k, top_p, k, max_new_tokens
    metrics = models.JSONField(default=dict, blank=True)  # accuracy, ci, entropy_bits, pass@k, …
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the worker that claims it (webapp.evaluations.runner): its name, and a heartbeat while
    # the evaluator child runs; the lost-work sweep fails a running one whose heartbeat went stale.
    host = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "step", "benchmark", "mode"], name="unique_evaluation"),
        ]
        indexes = [
            # The lost-work sweep scans running evaluations by heartbeat.
            models.Index(fields=["status", "heartbeat_at"], name="evaluation_status_heartbeat"),
        ]
        ordering = ["benchmark", "mode"]

    def __str__(self) -> str:
        return f"{self.benchmark} ({self.mode}) @ step {self.step}"

    @property
    def model_reference(self) -> str:
        """The model evaluated, as a user names it: the run's base model at step 0, else its checkpoint."""
        return self.run.model_name if self.step == 0 else run_ref(self.run_id, self.step)

    @property
    def shown_settings(self) -> dict[str, Any]:
        """The settings a user may see: the worker's own records (server paths) left out."""
        return {k: v for k, v in self.settings.items() if k not in EVAL_WORKER_SETTINGS}


class EvalResult(models.Model):
    """One graded sample of one question of an evaluation."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    question_id = models.CharField(max_length=100)
    index = models.PositiveSmallIntegerField()
    response = models.TextField()
    score = models.FloatField()
    length = models.IntegerField()
    entropy_bits = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "question_id", "index"], name="unique_eval_result"),
        ]

    def __str__(self) -> str:
        return f"{self.question_id}#{self.index}: {self.score}"


class VerdictChoice(models.TextChoices):
    APPROVE = "approve", "Approve"
    NEEDS_WORK = "needs_work", "Needs work"
    REJECT = "reject", "Reject"


class Comment(models.Model):
    """A Markdown comment on a run, a study or a single sample (exactly one target is set)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="comments")
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.CASCADE, related_name="comments")
    sample = models.ForeignKey(Sample, null=True, blank=True, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.author}: {self.body[:60]}"


class Verdict(models.Model):
    """A reviewer's verdict; the latest one per (author, target) is the one that counts."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="verdicts")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="verdicts")
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.CASCADE, related_name="verdicts")
    sample = models.ForeignKey(Sample, null=True, blank=True, on_delete=models.CASCADE, related_name="verdicts")
    verdict = models.CharField(max_length=12, choices=VerdictChoice.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.author}: {self.verdict}"


class Activity(models.Model):
    """The activity feed: who did what to which object, newest first. A project's events name the
    project; a team's own events (members, roles, invitations) name the team and no project."""

    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="activities")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="activities")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    verb = models.CharField(max_length=50)
    target = models.CharField(max_length=300)
    url = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activities"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(project__isnull=False) | models.Q(team__isnull=False), name="activity_has_a_place"
            )
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.verb} {self.target}"


class Dataset(models.Model):
    """A team's uploaded questions, named ``data:<name>.jsonl`` by its runs.

    The rows live here (gzip-compressed JSONL, validated by the trainer's own reader at upload), not
    on the web host's disk: the worker that runs a team's run writes the team's datasets into the
    team's uploads folder first (``webapp.worker.datasets``). Immutable once uploaded, so a run's
    task name always means the same questions; a new version is a new name.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()  # uncompressed JSONL
    kinds = models.JSONField(default=dict)  # {"math": 120, "choice": 8}
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_team_dataset")]

    def __str__(self) -> str:
        return f"{self.team}: {self.name}"

    @property
    def file_name(self) -> str:
        return f"{self.name}.jsonl"

    @property
    def reference(self) -> str:
        """The task a run names to train or evaluate on these questions."""
        return f"{DATA_PREFIX}{self.file_name}"


class Invitation(models.Model):
    """A link that makes whoever opens it (signed in) a member of ``team`` with ``role``; only the
    SHA-256 of its secret is stored. Used once, within ``INVITATION_DAYS``."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)

    INVITATION_DAYS = 7

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.role})"

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and timezone.now() - self.created_at < timedelta(days=self.INVITATION_DAYS)

    @classmethod
    def issue(cls, *, team: Team, email: str, role: str, user: Any) -> tuple[Invitation, str]:
        """Create an invitation and return it with its secret, which is shown once and never stored."""
        raw = secrets.token_urlsafe(32)
        invitation = cls.objects.create(team=team, email=email, role=role, digest=ApiToken.hash(raw), created_by=user)
        return invitation, raw


class ApiToken(models.Model):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, *, user: Any, name: str) -> tuple[ApiToken, str]:
        """Create a token and return it with its raw value, which is shown once and never stored."""
        raw = "psl_" + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, digest=cls.hash(raw), prefix=raw[4:12])
        return token, raw


class Worker(models.Model):
    """A Celery worker host as last seen through its heartbeat."""

    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200)
    queues = models.JSONField(default=list)
    gpus = models.JSONField(default=list)  # [{"index": 0, "name": "A100", "memory_free_mb": 1234, ...}]
    memory_free_mb = models.IntegerField(default=0)
    current_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def is_online(self, *, now: Any = None) -> bool:
        now = now or timezone.now()
        return (now - self.last_seen_at).total_seconds() < 3 * settings.PSL_HEARTBEAT_SECONDS
