"""The hand-built artwork representation must equal DRF's field-by-field one."""

import pytest
from django.test import RequestFactory
from rest_framework import serializers

from catalog.api import ArtworkSerializer
from catalog.models import Artwork


def _generic(instance, context):
    serializer = ArtworkSerializer(context=context)
    return serializers.ModelSerializer.to_representation(serializer, instance)


@pytest.mark.parametrize("with_request", [True, False])
def test_fast_artwork_representation_equals_drfs(imported_demo, with_request):
    unlabelled = Artwork.objects.filter(genre__isnull=True).first()
    labelled = Artwork.objects.exclude(genre__isnull=True).exclude(image="").first()
    assert unlabelled is not None and labelled is not None
    labelled.genre_confidence = 0.75
    labelled.year = 1890
    labelled.save()
    Artwork.objects.filter(pk=unlabelled.pk).update(image="", thumbnail="")
    context = {"request": RequestFactory().get("/api/artworks/")} if with_request else {}
    artworks = list(Artwork.objects.select_related("artist", "style", "genre").order_by("pk"))
    assert any(a.image for a in artworks) and any(not a.image for a in artworks)
    for artwork in artworks:
        fast = ArtworkSerializer(artwork, context=context).data
        assert fast == _generic(artwork, context), artwork.pk
        assert list(fast) == list(ArtworkSerializer.Meta.fields)
    if with_request:
        assert ArtworkSerializer(labelled, context=context).data["image"].startswith("http://")
