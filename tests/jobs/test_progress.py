"""Progress reports and the ETA derived from them."""

from datetime import timedelta

import pytest

from jobs.models import Job
from jobs.services import job_progress, job_start


def _age_run(job, seconds: float) -> None:
    """Move the start of the current run of reports `seconds` into the past."""
    job.refresh_from_db()
    Job.objects.filter(pk=job.pk).update(
        progress_since=job.progress_since - timedelta(seconds=seconds)
    )


@pytest.mark.django_db
def test_eta_is_the_rate_since_the_phases_first_report():
    job = Job.objects.create(kind="test")
    job_start(job.pk)
    Job.objects.filter(pk=job.pk).update(started_at=job.created_at - timedelta(seconds=600))
    # Ten minutes of setup (model loading) before the first step: the first report
    # gives no estimate rather than 600 s x 39.
    job_progress(job.pk, 1, 40, "training 1/2")
    job.refresh_from_db()
    assert job.eta_seconds is None and job.progress == pytest.approx(1 / 40)
    _age_run(job, 10)  # then 10 steps in 10 s: 1 s a step, 29 steps to go
    job_progress(job.pk, 11, 40, "training 1/2")
    job.refresh_from_db()
    assert job.eta_seconds == pytest.approx(29, rel=0.05)

    # A new phase (another total) starts a new run: the first phase's time does not count.
    job_progress(job.pk, 2, 12, "rendering")
    job.refresh_from_db()
    assert job.eta_seconds is None and job.total == 12
    _age_run(job, 2)  # 4 steps in 2 s, 6 to go
    job_progress(job.pk, 6, 12, "rendering")
    job.refresh_from_db()
    assert job.eta_seconds == pytest.approx(3, rel=0.05)


@pytest.mark.django_db
def test_a_retried_attempt_starts_a_new_eta_run():
    job = Job.objects.create(kind="test")
    job_start(job.pk)
    job_progress(job.pk, 5, 40)
    _age_run(job, 3600)  # the worker died an hour ago at step 5
    job_start(job.pk)  # the retry resumes from a checkpoint at step 20
    job_progress(job.pk, 20, 40)
    job.refresh_from_db()
    assert job.eta_seconds is None  # not 3600 s / 15 steps x 20
    _age_run(job, 5)
    job_progress(job.pk, 25, 40)
    job.refresh_from_db()
    assert job.eta_seconds == pytest.approx(15, rel=0.05)
