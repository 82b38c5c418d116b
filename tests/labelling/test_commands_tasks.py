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
    call_command("label_genres", "--no-progress", "--limit", "4", stdout=out)
    text = out.getvalue()
    assert "Labelled 4 artworks" in text and "stand-in model, random weights" in text
    assert Artwork.objects.filter(genre_source="vqa").count() == 4


def test_label_genres_command_names_the_missing_model(imported_demo, settings, tmp_path):
    settings.VQA_MODEL = str(tmp_path / "missing-model")
    with pytest.raises(CommandError, match="MYTHRAGEN_VQA_MODEL"):
        call_command("label_genres", "--no-progress", stdout=StringIO())


def test_eval_labelling_command_writes_the_report(imported_demo, tiny_labelling, tmp_path):
    out = StringIO()
    call_command("eval_labelling", "--sample", "12", "--out", str(tmp_path / "r.json"), stdout=out)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sample"] == 12 and len(report["confusion_matrix"]) == 10
    assert "stand-in model" in out.getvalue() and "accuracy" in out.getvalue().lower()


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
