"""One rule for the current embedding space (`selectors.space_configured`), read-only."""

from __future__ import annotations

import pytest

from catalog.models import Artwork
from retrieval import selectors, services
from retrieval.models import EmbeddingSpace


@pytest.mark.django_db
def test_reads_before_anything_is_embedded_write_nothing(imported_demo):
    """Search, similar artworks and the status answer "not built" without making a space
    (before, a search created the configured space on the read path)."""
    with pytest.raises(services.RetrievalUnavailable, match="No search index is built yet"):
        selectors.artwork_search("a painting")
    assert selectors.artwork_similar(Artwork.objects.first(), k=3) == []
    assert selectors.index_status() == {"built": False}
    assert selectors.space_configured() is None
    assert not EmbeddingSpace.objects.exists()


@pytest.mark.django_db
def test_every_reader_follows_the_configured_space_not_the_newest_row(indexed_demo):
    """A newer space of another model (embedded earlier under other settings) changes
    nothing: search, similar artworks, the status and the review queue's index all use
    the configured one."""
    from labelling.selectors import _served_index

    configured = selectors.space_configured()
    assert configured is not None and configured.embedder == "minilm"
    other = EmbeddingSpace.objects.create(
        key="another-model", embedder="blip2", model_id="elsewhere", dim=256
    )
    assert other.pk > configured.pk
    assert selectors.space_configured() == configured
    status = selectors.index_status()
    assert status["built"] is True and status["space"] == str(configured)
    art = Artwork.objects.first()
    assert selectors.artwork_similar(art, k=3)  # the configured space's index answers
    assert _served_index().version == indexed_demo.version
    assert selectors.artwork_search("a painting", k=3).index_version == indexed_demo.version


@pytest.mark.django_db
def test_a_change_of_fusion_weights_is_another_space(indexed_demo, settings):
    settings.RETRIEVAL_FUSION_WEIGHTS = {**settings.RETRIEVAL_FUSION_WEIGHTS, "genre": 0.5}
    assert selectors.space_configured() is None  # nothing embedded with these weights
    assert selectors.index_status() == {"built": False}
