"""The generate, lora_evict and eval_generation commands."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from generation.ml.provenance import read_png_provenance
from generation.models import Generation, LoraCacheEntry, LoraStatus

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("gen_settings")]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def inline_celery():
    from celery_app import app

    yield
    app.conf.task_always_eager = False  # `generate --inline` switches it on


@pytest.fixture
def transactional(transactional_db):
    """The command commits (its on_commit callbacks run), as it does outside tests."""


def test_generate_writes_the_png_and_reruns_it_exactly_from_the_png(
    transactional, imported_demo, inline_celery, tmp_path
):
    from retrieval import services as retrieval

    retrieval.index_rebuild()
    out = _call("generate", PROMPT, "--out", str(tmp_path / "out"), "--seed", "11", "--inline")
    first = Generation.objects.get()
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == [f"{first.pk}-11-baseline.png", f"{first.pk}-11.png"], out
    assert "tiny stand-in" in out and "succeeded" in out
    png = tmp_path / "out" / f"{first.pk}-11.png"
    provenance = read_png_provenance(png)
    assert provenance["prompt"] == PROMPT and provenance["seed"] == 11

    again = _call("generate", "--from-png", str(png), "--out", str(tmp_path / "re"), "--inline")
    rerun = Generation.objects.exclude(pk=first.pk).get()
    assert rerun.job.status == "succeeded", again
    a = np.asarray(Image.open(png))
    b = np.asarray(Image.open(tmp_path / "re" / f"{rerun.pk}-11.png"))
    assert (a == b).all()
    assert set(LoraCacheEntry.objects.values_list("uses", flat=True)) == {2}

    report = _call("lora_evict", "--all")
    assert "evicted 2" in report
    assert set(LoraCacheEntry.objects.values_list("status", flat=True)) == {LoraStatus.EVICTED}


def test_generate_reports_bad_requests(imported_demo, tmp_path):
    with pytest.raises(CommandError, match="multiple of 8"):
        _call("generate", PROMPT, "--out", str(tmp_path), "--size", "70")
    with pytest.raises(CommandError, match="PROMPT"):
        _call("generate", "--out", str(tmp_path))


def test_eval_generation_reports_the_table3_columns(indexed_demo):
    data = json.loads(
        _call("eval_generation", "--prompts", "2", "--k", "3", "--max-catalog", "60", "--json")
    )
    assert len(data["prompts"]) == 2 and data["is_tiny"]
    assert data["backbone"].startswith("tiny-clip") and data["distance"] == "KID"
    assert set(data["rows"]) == {"MythraGen", "Prompt-only baseline"}
    for row in data["rows"].values():
        assert 0 <= row["clip_t"] <= 100 and -1 <= row["clip_i"] <= 1
        assert np.isfinite(row["kid"]) and 0 <= row["style_accuracy"] <= 1
    assert data["classifier"]["artworks"] == 60 and 0 <= data["classifier"]["val_accuracy"] <= 1
    # The LoRAs went to the cache: a second run trains nothing.
    assert LoraCacheEntry.objects.filter(status=LoraStatus.READY).count() in (3, 4)  # may share
    table = _call("eval_generation", "--prompts", "2", "--k", "3", "--max-catalog", "60")
    assert "CLIP-T" in table and "CLIP backbone: tiny-clip" in table and "style acc" in table
    assert set(LoraCacheEntry.objects.values_list("uses", flat=True)) == {0}


def test_ridge_style_classifier_separates_clusters():
    from generation.evaluation import ridge_classifier_fit, ridge_classifier_predict

    rng = np.random.default_rng(0)
    centres = {"Cubism": np.eye(8)[0], "Ukiyo_e": np.eye(8)[1], "Pop_Art": np.eye(8)[2]}
    x = np.vstack([c + 0.05 * rng.standard_normal((20, 8)) for c in centres.values()])
    y = [s for s in centres for _ in range(20)]
    model = ridge_classifier_fit(x, y)
    assert ridge_classifier_predict(model, np.stack(list(centres.values()))) == list(centres)
