"""The artwork representation (DRF's ModelSerializer): names for relations, absolute
image URLs with a request, nulls for what an artwork lacks."""

from django.test import RequestFactory

from catalog.api.serializers import ArtworkSerializer
from catalog.models import Artwork


def test_artwork_representation(imported_demo):
    labelled = Artwork.objects.exclude(genre__isnull=True).exclude(image="").first()
    unlabelled = Artwork.objects.filter(genre__isnull=True).first()
    assert labelled is not None and unlabelled is not None
    Artwork.objects.filter(pk=labelled.pk).update(genre_confidence=0.75, year=1890)
    Artwork.objects.filter(pk=unlabelled.pk).update(image="", thumbnail="")
    context = {"request": RequestFactory().get("/api/artworks/")}
    rows = Artwork.objects.select_related("artist", "style", "genre")

    data = ArtworkSerializer(rows.get(pk=labelled.pk), context=context).data
    assert list(data) == list(ArtworkSerializer.Meta.fields)
    assert data["artist"] == labelled.artist.slug and data["artist_name"] == labelled.artist.name
    assert data["style"] == labelled.style.name and data["genre"] == labelled.genre.name
    assert data["genre_confidence"] == 0.75 and data["year"] == 1890
    assert data["image"].startswith("http://") and data["thumbnail"].startswith("http://")

    bare = ArtworkSerializer(rows.get(pk=unlabelled.pk)).data
    assert bare["genre"] is None and bare["image"] is None and bare["thumbnail"] is None
