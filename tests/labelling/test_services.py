"""Captions, zero-shot genre labels, evaluation, and curator corrections (services)."""

import numpy as np
import pytest

from catalog.models import Artwork, Genre, GenreLabel, LabelSource
from catalog.services import genre_label_add
from labelling import genre_services, selectors, services
from labelling.models import BulkOperation

pytestmark = pytest.mark.django_db


def test_captions_come_from_the_model_and_say_it_is_tiny(imported_demo, tiny_labelling, settings):
    report = services.captions_generate(limit=6)
    assert report.captioned == 6 and report.is_tiny
    first = dict(Artwork.objects.filter(caption_source="tiny-model").values_list("id", "caption"))
    assert len(first) == 6
    assert all(
        a.caption_model == settings.CAPTION_MODEL for a in Artwork.objects.filter(pk__in=first)
    )
    again = services.captions_generate(limit=6)  # the next six: captioned ones are skipped
    assert again.captioned == 6
    now = dict(Artwork.objects.filter(caption_source="tiny-model").values_list("id", "caption"))
    assert len(now) == 12 and all(now[i] == c for i, c in first.items())


def test_captions_for_artworks_without_image_stay_the_title(imported_demo, tiny_labelling):
    art = Artwork.objects.first()
    Artwork.objects.filter(pk=art.pk).update(image="")
    services.captions_generate()
    art.refresh_from_db()
    assert art.caption == art.title and art.caption_source == "title"


def test_zero_shot_labels_every_unlabelled_artwork_with_probabilities(
    imported_demo, tiny_labelling
):
    lacking = set(Artwork.objects.filter(genre__isnull=True).values_list("id", flat=True))
    report = genre_services.genres_label(labeller="vqa")
    assert report.labelled == len(lacking) and report.remaining == 0 and report.is_tiny
    labels = GenreLabel.objects.filter(source=LabelSource.VQA)
    assert set(labels.values_list("artwork_id", flat=True)) == lacking
    for label in labels.select_related("genre", "artwork"):
        probs = label.scores
        assert set(probs) == set(Genre.objects.values_list("name", flat=True))
        assert abs(sum(probs.values()) - 1) < 1e-4
        assert label.genre.name == max(probs, key=probs.get)
        assert label.confidence == pytest.approx(max(probs.values()), abs=1e-5)
        assert "stand-in model" in label.note
        assert label.artwork.genre_id == label.genre_id and label.artwork.genre_source == "vqa"


def test_labelling_resumes_and_respects_curators(imported_demo, tiny_labelling, curator):
    lacking = list(Artwork.objects.filter(genre__isnull=True).order_by("id"))
    # A curator already decided one of them: the model must not be asked about it again.
    genre_label_add(
        lacking[0], Genre.objects.get(name="portrait"), source=LabelSource.CURATOR, user=curator
    )
    first = genre_services.genres_label(labeller="vqa", limit=5)
    assert first.labelled == 5
    second = genre_services.genres_label(labeller="vqa")
    assert second.labelled == len(lacking) - 1 - 5
    assert not GenreLabel.objects.filter(artwork=lacking[0], source=LabelSource.VQA).exists()
    lacking[0].refresh_from_db()
    assert lacking[0].genre_source == "curator"


def test_unknown_candidate_genre_is_refused(imported_demo, tiny_labelling):
    with pytest.raises(ValueError, match="Unknown genre"):
        genre_services.genres_label(genres=["portrait", "space_opera"])


def test_missing_vqa_model_names_the_variable(imported_demo, settings, tmp_path):
    settings.VQA_MODEL = str(tmp_path / "absent")
    with pytest.raises(services.LabellingUnavailable, match="MYTHRAGEN_VQA_MODEL"):
        genre_services.genres_label(labeller="vqa")


def test_two_curators_cannot_silently_overwrite_each_other(imported_demo, curator, curator2):
    art = Artwork.objects.exclude(genre=None).first()
    seen = art.label_version
    services.genre_label_correct(
        art.pk, Genre.objects.get(name="portrait"), user=curator, expected_version=seen
    )
    with pytest.raises(
        services.GenreConflict, match="cora changed this artwork's genre to portrait"
    ):
        services.genre_label_correct(
            art.pk, Genre.objects.get(name="landscape"), user=curator2, expected_version=seen
        )
    art.refresh_from_db()
    assert art.genre.name == "portrait"
    assert GenreLabel.objects.filter(artwork=art, user=curator2).count() == 0


def test_revert_to_an_earlier_label(imported_demo, curator):
    art = Artwork.objects.exclude(genre=None).first()
    original = art.genre
    wikiart_label = art.genre_labels.get()
    services.genre_label_correct(
        art.pk,
        Genre.objects.get(name="nude_painting"),
        user=curator,
        expected_version=art.label_version,
    )
    art.refresh_from_db()
    services.genre_label_revert(
        art.pk, wikiart_label.pk, user=curator, expected_version=art.label_version
    )
    art.refresh_from_db()
    assert art.genre == original and art.genre_source == "curator"
    assert "revert to label" in art.genre_labels.order_by("-id").first().note
    assert art.genre_labels.count() == 3  # nothing lost


def test_bulk_relabel_preview_apply_and_undo(imported_demo, tiny_labelling, curator):
    genre_services.genres_label(labeller="vqa")
    vqa_ids = list(Artwork.objects.filter(genre_source="vqa").values_list("id", flat=True))
    before = dict(Artwork.objects.filter(pk__in=vqa_ids).values_list("id", "genre_id"))
    still_life = Genre.objects.get(name="still_life")
    preview = services.bulk_plan(Artwork.objects.filter(pk__in=vqa_ids), "relabel", still_life)
    assert len(preview) == len(vqa_ids) and all(c.new == still_life for c in preview)
    assert GenreLabel.objects.filter(source="curator").count() == 0  # preview wrote nothing
    op = services.bulk_apply(vqa_ids, "relabel", user=curator, genre=still_life)
    assert op.count == len(vqa_ids)
    assert set(Artwork.objects.filter(pk__in=vqa_ids).values_list("genre__name", flat=True)) == {
        "still_life"
    }
    restored = services.bulk_undo(op, user=curator)
    assert restored == len(vqa_ids)
    after = dict(Artwork.objects.filter(pk__in=vqa_ids).values_list("id", "genre_id"))
    assert after == before
    assert set(Artwork.objects.filter(pk__in=vqa_ids).values_list("genre_source", flat=True)) == {
        "vqa"
    }
    assert GenreLabel.objects.filter(batch_id=op.pk, retracted_at__isnull=False).count() == len(
        vqa_ids
    )
    with pytest.raises(ValueError, match="already undone"):
        services.bulk_undo(BulkOperation.objects.get(pk=op.pk), user=curator)


def test_accept_confirms_the_model_suggestion(imported_demo, tiny_labelling, curator):
    genre_services.genres_label(labeller="vqa", limit=1)
    art = Artwork.objects.get(genre_source="vqa")
    suggestion = art.genre
    services.genre_suggestion_accept(art.pk, user=curator, expected_version=art.label_version)
    art.refresh_from_db()
    assert art.genre == suggestion and art.genre_source == "curator"


def test_a_correction_reassembles_the_fused_vector_at_once(
    indexed_demo, curator, django_capture_on_commit_callbacks
):
    from retrieval import services as retrieval
    from retrieval.ml.index import overlay_read
    from retrieval.models import ArtworkEmbedding
    from retrieval.selectors import space_configured
    from retrieval.vectors import fused_matrix

    art = Artwork.objects.exclude(genre=None).first()
    before = ArtworkEmbedding.objects.get(artwork=art).fused_hash
    with django_capture_on_commit_callbacks(execute=True):
        services.genre_label_correct(
            art.pk,
            Genre.objects.get(name="cityscape"),
            user=curator,
            expected_version=art.label_version,
        )
    after = ArtworkEmbedding.objects.get(artwork=art).fused_hash
    assert after and after != before  # re-assembled, not left stale
    space = space_configured()
    overlay = overlay_read(retrieval.index_root(space))
    assert overlay.ids.tolist() == [art.pk]
    ids, matrix, _ = fused_matrix(space)
    np.testing.assert_allclose(overlay.vectors[0], matrix[ids.tolist().index(art.pk)], atol=1e-6)
    art.refresh_from_db()
    assert overlay.keys.tolist() == [art.label_version]


def test_review_queue_orders_low_confidence_and_disagreeing_neighbours_first(
    indexed_demo, tiny_labelling
):
    genre_services.genres_label(labeller="vqa")
    items = selectors.review_queue(limit=200)
    assert items and items == sorted(items, key=lambda it: -it.priority)
    vqa = [it for it in items if it.artwork.genre_source == "vqa"]
    wikiart = [it for it in items if it.artwork.genre_source == "wikiart"]
    assert all(it.disagreement is not None for it in items)
    # Model labels (confidence < 1) come before WikiArt labels that their neighbours agree with.
    agreeing = [it for it in wikiart if it.disagreement == 0]
    if agreeing and vqa:
        assert items.index(vqa[0]) < items.index(agreeing[0])
    low = selectors.review_queue({"confidence_max": "0.5"}, limit=200)
    assert all(it.confidence is not None and it.confidence <= 0.5 for it in low)
    with pytest.raises(selectors.ReviewFilterError):
        selectors.review_queue({"confidence_min": "lots"})


def test_a_mislabelled_artwork_is_flagged_by_its_neighbours(indexed_demo, curator):
    # No demo artwork is a religious painting: label one so and its neighbours disagree.
    art = Artwork.objects.filter(genre__name="landscape").first()
    before = {it.artwork.pk: it for it in selectors.review_queue(limit=500)}[art.pk]
    genre_label_add(art, Genre.objects.get(name="religious_painting"), source=LabelSource.WIKIART)
    from retrieval import services as retrieval_services

    retrieval_services.index_rebuild()
    queue = selectors.review_queue(limit=500)
    after = next(it for it in queue if it.artwork.pk == art.pk)
    assert after.disagreement == 1.0 > before.disagreement
    assert after.neighbour_genre not in (None, "religious_painting")
    # It now ranks above every WikiArt-labelled artwork its neighbours partly agree with.
    assert all(
        queue.index(after) < queue.index(it)
        for it in queue
        if it.artwork.genre_source == "wikiart" and (it.disagreement or 0) < 1.0
    )


def test_a_labelling_run_cut_short_leaves_its_artworks_to_retrievals_hashes(
    indexed_demo, tiny_labelling, monkeypatch
):
    """Labelling marks no vector stale itself: retrieval's fused hash covers an artwork's
    labels, so even a run that never reached its final `artwork_labels_changed` (a worker
    killed between batches) leaves exactly the relabelled artworks to `embed_catalog`."""
    from retrieval import catalog_embedding
    from retrieval.models import ArtworkEmbedding

    hashes = dict(ArtworkEmbedding.objects.values_list("artwork_id", "fused_hash"))
    monkeypatch.setattr(genre_services, "artwork_labels_changed", lambda ids: 0)  # cut short
    report = genre_services.genres_label(labeller="vqa")
    relabelled = set(Artwork.objects.filter(genre_source="vqa").values_list("id", flat=True))
    assert report.labelled == len(relabelled) > 0
    # Nothing was written to the vectors by labelling ...
    assert dict(ArtworkEmbedding.objects.values_list("artwork_id", "fused_hash")) == hashes
    # ... and retrieval finds the relabelled artworks by their hash, and only them.
    again = catalog_embedding.embed_catalog()
    assert again.up_to_date == again.artworks - len(relabelled)
    changed = {
        a
        for a, h in ArtworkEmbedding.objects.values_list("artwork_id", "fused_hash")
        if hashes[a] != h
    }
    assert changed == relabelled


def test_a_curator_overrides_a_genre_model_label_and_the_latest_model_label_wins(
    imported_demo, curator
):
    """Which label is current: curator over WikiArt over either model (the genre model and
    the VQA model rank alike, the latest winning)."""
    artwork = Artwork.objects.filter(genre__isnull=True).first()
    landscape, portrait, still = (
        Genre.objects.get(name=n) for n in ("landscape", "portrait", "cityscape")
    )
    genre_label_add(artwork, landscape, source=LabelSource.VQA, confidence=0.4)
    genre_label_add(artwork, portrait, source=LabelSource.MODEL, confidence=0.6)
    artwork.refresh_from_db()
    assert (artwork.genre, artwork.genre_source) == (portrait, LabelSource.MODEL)
    services.genre_label_correct(
        artwork.pk, still, user=curator, expected_version=artwork.label_version
    )
    artwork.refresh_from_db()
    assert (artwork.genre, artwork.genre_source) == (still, LabelSource.CURATOR)
    genre_label_add(artwork, landscape, source=LabelSource.MODEL, confidence=0.9)
    artwork.refresh_from_db()
    assert (artwork.genre, artwork.genre_source) == (still, LabelSource.CURATOR)
