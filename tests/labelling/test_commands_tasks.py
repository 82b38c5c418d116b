"""Labelling commands and the labelling job (run eagerly here; workers are tested elsewhere)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Artwork
from jobs.models import Job, JobStatus
from labelling.tasks import LABEL_GENRES, label_genres_task

pytestmark = pytest.mark.django_db


def test_label_genres_command_reports_tiny_labels(imported_demo, tiny_labelling):
    out = StringIO()
    call_command("label_genres", "--no-progress", "--limit", "4", "--labeller", "vqa", stdout=out)
    text = out.getvalue()
    assert "Labelled 4 artworks" in text and "stand-in model, random weights" in text
    assert Artwork.objects.filter(genre_source="vqa").count() == 4


def test_label_genres_command_by_default_trains_and_fuses(imported_demo, tiny_labelling):
    out = StringIO()
    call_command("label_genres", "--no-progress", stdout=out)
    text = out.getvalue()
    lacking = Artwork.objects.filter(genre_source="model").count()
    assert "No genre model was trained yet: trained" in text
    assert f"Labelled {lacking} artworks with genre-model:" in text
    assert f"{lacking} of them fused with the VQA model" in text
    assert not Artwork.objects.filter(genre__isnull=True).exists()


def test_label_genres_command_names_the_missing_model(imported_demo, settings, tmp_path):
    settings.VQA_MODEL = str(tmp_path / "missing-model")
    with pytest.raises(CommandError, match="MYTHRAGEN_VQA_MODEL"):
        call_command("label_genres", "--no-progress", "--labeller", "vqa", stdout=StringIO())


def test_eval_labelling_command_writes_the_report(imported_demo, tiny_labelling, tmp_path):
    out = StringIO()
    call_command("eval_labelling", "--sample", "12", "--out", str(tmp_path / "r.json"), stdout=out)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sections"]["vqa"]["n"] == 12
    assert len(report["sections"]["metadata"]["confusion_matrix"]) == 10
    assert "stand-in with random weights" in out.getvalue() and "| baseline |" in out.getvalue()


def test_caption_command(imported_demo, tiny_labelling):
    out = StringIO()
    call_command("caption_artworks", "--limit", "3", "--no-progress", stdout=out)
    assert "Captioned 3 artworks" in out.getvalue()


def test_label_genres_job_records_progress_and_result(imported_demo, tiny_labelling):
    from jobs.services import job_create

    job = job_create(LABEL_GENRES)
    label_genres_task.apply(args=[job.pk], kwargs={"limit": 5}, throw=True)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0
    assert job.result["labelled"] == 5 and job.result["is_tiny"] is True
    assert Job.objects.count() == 1


def test_train_genre_model_job_records_progress_and_the_version(imported_demo, settings):
    from jobs.services import job_create
    from labelling.models import GenreModelVersion
    from labelling.tasks import TRAIN_GENRE_MODEL, train_genre_model_task

    settings.GENRE_LABELLER = "metadata"
    job = job_create(TRAIN_GENRE_MODEL)
    train_genre_model_task.apply(args=[job.pk], throw=True)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0
    assert job.result["version"] == GenreModelVersion.objects.get().version


def test_the_admin_retrains_as_a_job(client, imported_demo):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    from labelling.tasks import TRAIN_GENRE_MODEL

    admin = get_user_model().objects.create_superuser("root", "", "pw")
    client.force_login(admin)
    url = reverse("admin:labelling_genremodelversion_changelist")
    page = client.get(url)
    assert page.status_code == 200 and b"retrain-genre-model" in page.content
    client.post(reverse("admin:labelling_genremodelversion_retrain"))
    job = Job.objects.get(kind=TRAIN_GENRE_MODEL)
    assert job.user == admin and job.status == JobStatus.QUEUED
    client.post(reverse("admin:labelling_genremodelversion_retrain"))  # one at a time
    assert Job.objects.filter(kind=TRAIN_GENRE_MODEL).count() == 1
