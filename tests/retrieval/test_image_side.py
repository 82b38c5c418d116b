"""The image side of retrieval end to end, on the tiny BLIP-2 model built with the real
classes: the catalog's images are embedded into the content slot (V = 1.0 image + 0.9
caption + 0.75 genre), the index is built over those fused vectors, an uploaded image is
searched through the API and the search page, and eval_retrieval runs the image-only
versus fused ablation that a text-only embedder skips."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from catalog.models import Artwork
from retrieval import catalog_embedding, selectors, services, vectors
from retrieval.models import ArtworkEmbedding

from .helpers import eval_report, image_input

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_blip2_model(tmp_path_factory):
    from retrieval.ml.tiny import build_tiny_blip2_retrieval

    return build_tiny_blip2_retrieval(tmp_path_factory.mktemp("models") / "tiny-blip2")


@pytest.fixture
def blip2_indexed(imported_demo, settings, tiny_blip2_model):
    settings.RETRIEVAL_EMBEDDER = "blip2"
    settings.RETRIEVAL_BLIP2_MODEL = str(tiny_blip2_model)
    embedded = catalog_embedding.embed_catalog()
    built = services.index_rebuild()
    return embedded, built


def _image_of(artwork: Artwork) -> Image.Image:
    with artwork.image.open("rb") as fh:
        return Image.open(fh).convert("RGB")


def _upload(image: Image.Image, name: str = "query.png") -> BytesIO:
    buf = BytesIO()
    image.save(buf, format="PNG")
    buf.seek(0)
    buf.name = name
    return buf


def _exact_top(query: np.ndarray, k: int):
    from retrieval.ml.index import exact_search

    space = selectors.space_configured()
    ids, matrix, _hash = vectors.fused_matrix(space)
    scores, found = exact_search(matrix, ids, query[None, :], k)
    return scores[0], found[0]


def test_catalog_images_are_embedded_into_the_content_slot(blip2_indexed):
    embedded, built = blip2_indexed
    with_image = Artwork.objects.exclude(image="").count()
    assert with_image > 0
    assert embedded.images_embedded == with_image and embedded.is_tiny
    space = selectors.space_configured()
    assert space.has_image and space.embedder == "blip2" and space.dim == 256
    assert built.d == 4 * 256 and built.is_tiny
    assert (
        ArtworkEmbedding.objects.filter(space=space, image_vector__isnull=False).count()
        == with_image
    )
    # The image term is really in the fused content block: dropping it changes the block.
    from retrieval.ml.fusion import FusionWeights, fuse

    art = Artwork.objects.exclude(image="").filter(genre__isnull=False).order_by("id").first()
    row = ArtworkEmbedding.objects.get(space=space, artwork=art)
    ids, matrix, _ = vectors.fused_matrix(space)
    stored = matrix[list(ids).index(art.pk), :256]
    labels = vectors.label_vectors(space)
    parts = [
        np.frombuffer(bytes(row.caption_vector), dtype=np.float32)[None, :],
        labels["genre"][art.genre_id][None, :],
        labels["artist"][art.artist_id][None, :],
        labels["style"][art.style_id][None, :],
    ]
    image = np.frombuffer(bytes(row.image_vector), dtype=np.float32)[None, :]
    weights = FusionWeights(**space.weights)
    with_image_term = fuse(*parts, image=image, weights=weights)[0, :256]
    without_image_term = fuse(*parts, weights=weights)[0, :256]
    assert np.allclose(stored, with_image_term, atol=1e-6)
    assert not np.allclose(stored, without_image_term, atol=1e-3)


def test_api_searches_by_an_uploaded_image(client, blip2_indexed):
    art = Artwork.objects.exclude(image="").order_by("id")[5]
    image = _image_of(art)
    response = client.post("/api/search/", {"image": _upload(image), "k": 8})
    assert response.status_code == 200, response.content[:300]
    data = response.json()
    assert data["is_tiny"] is True and len(data["results"]) == 8
    # The same ranking as exact search with the image's own embedding in the content slot.
    from retrieval.ml.fusion import query_vector

    embedder = services.embedder_get()
    query = query_vector(embedder.embed_images([image])[0], dim=256)
    scores, ids = _exact_top(query, 8)
    got = [(r["artwork"]["id"], r["score"]) for r in data["results"]]
    assert [s for _i, s in got] == pytest.approx([float(s) for s in scores], abs=1e-5)
    assert {i for i, _s in got} == {int(i) for i in ids}
    # An image fills only the content slot.
    for r in data["results"]:
        assert r["slots"]["genre"] == r["slots"]["artist"] == r["slots"]["style"] == 0


def test_an_image_and_a_prompt_combine(blip2_indexed):
    art = Artwork.objects.select_related("artist").exclude(image="").order_by("id")[3]
    result = selectors.artwork_search(f"by {art.artist.name}", k=5, image=_image_of(art))
    assert [m.slot for m in result.parsed.matches] == ["artist"]
    assert all(h.artwork.artist_id == art.artist_id for h in result.hits)
    assert all(h.slots["content"] != 0 and h.slots["artist"] > 0 for h in result.hits)


def test_search_page_takes_an_uploaded_image(client, blip2_indexed):
    art = Artwork.objects.exclude(image="").order_by("id")[2]
    response = client.post("/search/", {"image": _upload(_image_of(art)), "k": 6})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="card"') == 6
    assert "tiny" in html.lower()  # the stand-in model is named on the page
    assert " disabled" not in image_input(html)  # offered, unlike with text-only MiniLM
    assert "MYTHRAGEN_EMBEDDER=blip2" not in html


def test_eval_retrieval_runs_the_image_only_ablation(blip2_indexed, tmp_path):
    report = eval_report(tmp_path, content_sample=10)
    ablation = report["ablation"]
    assert "skipped" not in ablation
    for name in ("genre", "artist", "style", "genre+artist+style"):
        for corpus in ("image_only", "fused"):
            row = ablation[name][corpus]
            assert row["queries"] > 0 and 0 <= row["mAP@50"] <= 1
    # Label queries against the fused vectors find their label exactly; the tiny model's
    # untrained image tower does not (text-to-image alone is near chance).
    assert ablation["genre"]["fused"]["mAP@50"] == pytest.approx(1.0)
    assert ablation["genre"]["image_only"]["mAP@50"] < 0.9
    markdown = (tmp_path / "eval.md").read_text()
    assert "image-only mAP@50" in markdown


def test_prompt_search_loads_the_text_half_only(client, blip2_indexed):
    """A web process that serves prompts never loads BLIP-2's vision tower; the first image
    search loads it, and the page says what that costs before anyone uploads."""
    from retrieval.ml.embedders import clear_embedder_registry

    clear_embedder_registry()  # a fresh web process
    assert client.get("/api/search/", {"q": "a portrait"}).status_code == 200
    embedder = services.embedder_get()
    assert embedder.loaded and not embedder.vision_loaded
    page = client.get("/search/").content.decode()
    assert "vision tower" in page and "2 GB in bfloat16" in page
    image = _image_of(Artwork.objects.exclude(image="").first())
    response = client.post("/api/search/", {"image": _upload(image)})
    assert response.status_code == 200
    assert embedder.vision_loaded
