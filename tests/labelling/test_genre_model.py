"""The genre model: training on the train split only, labelling every genre-less artwork
with what made each label, fusion with the VQA model, evaluation on the val split."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from catalog.models import Artwork, Genre, GenreLabel, LabelSource
from catalog.services import genre_label_add
from labelling import genre_evaluation, genre_services
from labelling.ml.genre_model import current_folder
from labelling.models import GenreAssessment, GenreModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def metadata_only(settings):
    settings.GENRE_LABELLER = "metadata"


def test_training_reads_the_train_split_only_and_publishes_a_version(
    imported_demo, metadata_only, settings
):
    ids, records, labels = genre_services.training_set()
    expected = set(
        Artwork.objects.filter(genre_split="train", genre__isnull=False).values_list(
            "id", flat=True
        )
    )
    assert set(ids) == expected and len(records) == len(labels) == len(ids)
    assert not Artwork.objects.filter(pk__in=ids, genre_split="val").exists()
    row = genre_services.genre_model_train()
    folder = current_folder(settings.GENRE_MODEL_DIR)
    assert folder.name == row.version and row.version.endswith(row.data_digest[:12])
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["data_digest"] == row.data_digest and meta["trained"] + meta["calibration"] == len(
        ids
    )
    assert row.fusion == {"skipped": meta["fusion_skipped"]}
    # Every artwork is assessed, with a probability per genre.
    assert GenreAssessment.objects.count() == Artwork.objects.count()
    scores = GenreAssessment.objects.first().scores
    assert set(scores) == set(Genre.objects.values_list("name", flat=True))
    assert sum(scores.values()) == pytest.approx(1, abs=1e-3)
    # The same data gives the same digest; a curator's correction changes it.
    again = genre_services.genre_model_train()
    assert again.data_digest == row.data_digest and again.version != row.version
    art = Artwork.objects.get(pk=ids[0])
    other = Genre.objects.exclude(pk=art.genre_id).first()
    genre_label_add(art, other, source=LabelSource.CURATOR)
    assert genre_services.genre_model_train().data_digest != row.data_digest


def test_label_genres_trains_when_needed_and_labels_every_genre_less_artwork(
    imported_demo, metadata_only
):
    lacking = set(Artwork.objects.filter(genre__isnull=True).values_list("id", flat=True))
    assert lacking and not GenreModelVersion.objects.exists()
    report = genre_services.genres_label()
    assert report.trained and report.labelled == len(lacking) and report.remaining == 0
    labels = GenreLabel.objects.filter(source=LabelSource.MODEL)
    assert set(labels.values_list("artwork_id", flat=True)) == lacking
    version = GenreModelVersion.objects.get().version
    for label in labels.select_related("genre", "artwork"):
        assert label.sources == ["metadata"]
        assert label.model_versions == {"metadata": version}
        assert label.model_id == f"genre-model:{version}"
        assert set(label.scores) == set(Genre.objects.values_list("name", flat=True))
        assert sum(label.scores.values()) == pytest.approx(1, abs=1e-4)
        assert label.genre.name == max(label.scores, key=label.scores.get)
        assert label.confidence == pytest.approx(max(label.scores.values()), abs=1e-5)
        assert label.source_scores == {"metadata": label.scores}
        art = label.artwork
        assert (art.genre_id, art.genre_source) == (label.genre_id, "model")
        assert art.genre_confidence == pytest.approx(label.confidence)
    again = genre_services.genres_label()
    assert again.labelled == 0 and not again.trained  # nothing left; the model is reused


def test_labelling_resumes_and_skips_what_a_curator_decided(imported_demo, metadata_only, curator):
    lacking = list(Artwork.objects.filter(genre__isnull=True).order_by("id"))
    portrait = Genre.objects.get(name="portrait")
    genre_label_add(lacking[0], portrait, source=LabelSource.CURATOR, user=curator)
    genre_label_add(lacking[1], None, source=LabelSource.CURATOR, user=curator)  # "no genre"
    first = genre_services.genres_label(limit=3, batch_size=2)  # two transactions
    assert first.labelled == 3
    second = genre_services.genres_label()
    assert second.labelled == len(lacking) - 2 - 3
    assert not GenreLabel.objects.filter(artwork__in=lacking[:2], source="model").exists()
    lacking[1].refresh_from_db()
    assert lacking[1].genre is None and lacking[1].genre_source == "curator"


def test_the_paper_vqa_only_path_stays_selectable(imported_demo, tiny_labelling):
    report = genre_services.genres_label(labeller="vqa", limit=4)
    assert report.labelled == 4 and report.is_tiny
    labels = GenreLabel.objects.filter(source=LabelSource.VQA)
    assert labels.count() == 4 and not GenreModelVersion.objects.exists()
    for label in labels:
        assert label.sources == ["vqa"] and label.source_scores == {"vqa": label.scores}
        assert "stand-in" in label.note
    with pytest.raises(ValueError, match="labeller must be one of"):
        genre_services.genres_label(labeller="oracle")


def test_auto_fuses_vqa_and_metadata_with_weights_fitted_on_training_images(
    imported_demo, tiny_labelling, settings
):
    settings.GENRE_LABELLER = "auto"
    row = genre_services.genre_model_train()
    fusion = row.fusion
    assert fusion["sources"] == ["metadata", "vqa"] and fusion["fitted_on"] >= 20
    assert fusion["report"]["vqa_model"] == settings.VQA_MODEL
    fitted = fusion["report"]
    # Fitted, not hand-set: on the artworks it was fitted on, the fusion is at least as
    # likely as either source alone (how it weighs a source with random weights on a few
    # dozen artworks is noise; tests/labelling/ml/test_fusion.py checks the weighing).
    assert fitted["nll"] <= fitted["by_source"]["metadata"]["nll"] + 0.05
    assert fitted["nll"] < fitted["by_source"]["vqa"]["nll"]
    report = genre_services.genres_label()
    assert report.fused == report.labelled > 0  # every demo artwork has an image
    label = GenreLabel.objects.filter(source=LabelSource.MODEL).first()
    assert label.sources == ["metadata", "vqa"]
    assert label.model_versions == {
        "metadata": row.version,
        "vqa": settings.VQA_MODEL,
        "fusion": row.version,
    }
    assert set(label.source_scores) == {"metadata", "vqa"}
    assert "stand-in VQA" in label.note
    fused = np.array(list(label.scores.values()))
    assert fused.sum() == pytest.approx(1, abs=1e-4)


def test_auto_without_a_fitted_fusion_says_so_and_uses_the_metadata_model(
    imported_demo, tiny_labelling, settings
):
    settings.GENRE_LABELLER = "metadata"
    genre_services.genre_model_train()  # trained without any VQA model
    settings.GENRE_LABELLER = "auto"
    report = genre_services.genres_label(limit=3)
    assert report.labelled == 3 and report.fused == 0
    assert any("no fusion was fitted" in note for note in report.notes)


def test_evaluation_measures_each_source_on_the_val_split(imported_demo, tiny_labelling, settings):
    settings.GENRE_LABELLER = "auto"
    report = genre_evaluation.labelling_evaluate(sample=40)
    val = Artwork.objects.filter(genre_split="val", genre_source="wikiart").count()
    assert report["n"] == val and report["split"] == "val"
    sections = report["sections"]
    assert set(sections) == {"metadata", "baseline", "vqa", "metadata_on_images", "fusion"}
    for name, sec in sections.items():
        matrix = np.array(sec["confusion_matrix"])
        assert matrix.sum() == sec["n"] and sec["accuracy"] == pytest.approx(
            np.trace(matrix) / sec["n"]
        ), name
        assert 0 <= sec["calibration"]["ece"] <= 1
        assert sec["precision_coverage"]["curve"]
        assert set(sec["targets_met"]) >= {"top1", "ece", "precision_coverage"}
    assert sections["metadata"]["n"] == val and sections["vqa"]["n"] == min(40, val)
    assert sections["vqa"]["is_stand_in"]
    # The demo's titles name their genre: the metadata model beats the random VQA model.
    assert sections["metadata_on_images"]["accuracy"] > sections["vqa"]["accuracy"]
    text = genre_evaluation.evaluation_markdown(report)
    for name in sections:
        assert f"| {name} |" in text


def test_train_and_eval_commands(imported_demo, metadata_only, tmp_path):
    out = StringIO()
    call_command("train_genre_model", "--no-progress", stdout=out)
    assert "Trained genre model" in out.getvalue() and "no fusion" in out.getvalue()
    out = StringIO()
    call_command("eval_labelling", "--no-baseline", "--out", str(tmp_path / "r.json"), stdout=out)
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["sections"]) == {"metadata"} and "vqa" in report["skipped"]
    assert "| metadata |" in out.getvalue()
