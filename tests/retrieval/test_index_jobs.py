"""Index rebuilds as jobs: who may ask, what the job records, one at a time."""

import pytest
from django.contrib.auth import get_user_model

from jobs.models import Job, JobStatus
from retrieval import selectors, services

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", "", "pw")
    client.force_login(user)
    return client


def test_only_admins_may_rebuild(client, imported_demo):
    assert client.post("/api/index/").status_code in (401, 403)
    user = get_user_model().objects.create_user("plain", "", "pw")
    client.force_login(user)
    assert client.post("/api/index/").status_code == 403
    assert not Job.objects.exists()


def test_admin_rebuild_runs_as_a_job_and_switches_the_index(
    admin_client, imported_demo, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from celery_app import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post("/api/index/")
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0
    assert job.result["kind"] == "flat" and job.result["n"] == 120
    status = admin_client.get("/api/index/").json()
    assert status["built"] and status["version"] == job.result["version"]
    assert admin_client.get(f"/api/jobs/{job.pk}/").json()["status"] == "succeeded"


def test_a_second_request_returns_the_running_job(imported_demo):
    first = services.index_rebuild_request()
    second = services.index_rebuild_request()
    assert first.pk == second.pk and Job.objects.count() == 1


def test_failed_rebuild_job_records_the_error(imported_demo, monkeypatch):
    from jobs.services import job_create
    from retrieval.tasks import index_rebuild_task

    def broken(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(services, "index_rebuild", broken)
    job = job_create("index_rebuild")
    with pytest.raises(RuntimeError):
        index_rebuild_task.apply(args=[job.pk], throw=True)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "out of memory" in job.error
    assert selectors.index_status()["built"] is False


def test_the_job_api_shows_parameters_but_not_the_recorded_task(admin_client, imported_demo):
    job = services.index_rebuild_request()
    job.refresh_from_db()
    assert "_task" in job.params  # recorded before sending (jobs.sending)
    shown = admin_client.get(f"/api/jobs/{job.pk}/").json()["params"]
    assert "_task" not in shown
    assert shown == {k: v for k, v in job.params.items() if k != "_task"}
