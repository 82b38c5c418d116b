"""Background jobs (index rebuilds, labelling runs, generations) and their state."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(models.Model):
    """One unit of background work run by a Celery task.

    Only `jobs.services` writes the state fields (status, stage, progress, ETA, error):
    tasks report through it, pages and the API read it.

    A running job records the process that claimed it (`worker`) and that process stamps
    `alive_at` while it runs, so a job whose worker was killed is found and resumed (see
    `jobs.services.job_recover_orphans`). `exclusive`, when set, allows one active job
    under that name (index rebuilds, labelling runs): the database enforces it.
    """

    kind = models.CharField(max_length=40, db_index=True)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    stage = models.CharField(max_length=200, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    # Where the current run of progress reports began (its first report's time and count):
    # the ETA is the rate since then, so model loading before the first step and earlier
    # phases with their own totals do not inflate it.
    progress_since = models.DateTimeField(null=True, blank=True)
    progress_from = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The process running it (`jobs.processes.identity()`) and its last sign of life,
    # written every JOBS_ALIVE_SECONDS whatever the task is doing.
    worker = models.CharField(max_length=300, blank=True)
    alive_at = models.DateTimeField(null=True, blank=True)
    # A queued job whose task is sent only from this time on (it waits for another job).
    wait_until = models.DateTimeField(null=True, blank=True)
    # How often it was resumed after losing its worker (JOBS_MAX_RECOVERIES caps it).
    recoveries = models.PositiveSmallIntegerField(default=0)
    exclusive = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["exclusive"],
                condition=Q(status__in=["queued", "running"]) & ~Q(exclusive=""),
                name="jobs_one_active_exclusive_job",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES
