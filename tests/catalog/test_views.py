"""Catalog pages and the REST API share one filter set and show the same artworks."""

import pytest
from django.urls import reverse

from catalog.models import Artwork, Genre, LabelSource
from catalog.services import genre_label_add

pytestmark = pytest.mark.django_db


def _ids_from_page(response):
    return [a.id for a in response.context["page"].object_list]


def test_catalog_page_lists_artworks_with_thumbnails_and_synthetic_banner(client, imported_demo):
    response = client.get(reverse("catalog:artwork-list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "synthetic demo paintings" in html
    assert html.count('class="card"') == 48  # CATALOG_PAGE_SIZE
    first = Artwork.objects.order_by("id").first()
    assert first.thumbnail.url in html and first.title in html
    assert response.context["page"].paginator.count == Artwork.objects.count()


@pytest.mark.parametrize(
    "params",
    [
        {"style": "Cubism"},
        {"genre": "portrait"},
        {"has_genre": "false"},
        {"has_genre": "true", "style": "Pop_Art"},
        {"artist": "chiyo-hanabusa"},
        {"label_source": "wikiart"},
        {"q": "harbour"},
        {"split": "val"},
        {"year_min": "1900", "year_max": "1950"},
    ],
)
def test_ui_and_api_filters_agree(client, imported_demo, params):
    page = client.get(reverse("catalog:artwork-list"), {**params})
    api = client.get("/api/artworks/", {**params, "page_size": 500})
    assert page.status_code == 200 and api.status_code == 200
    ui_total = page.context["page"].paginator.count
    assert api.json()["count"] == ui_total
    assert 0 < ui_total < Artwork.objects.count()


def test_filters_select_the_right_artworks(client, imported_demo):
    data = client.get("/api/artworks/", {"style": "Cubism", "has_genre": "false"}).json()
    ids = [row["id"] for row in data["results"]]
    expected = Artwork.objects.filter(style__name="Cubism", genre__isnull=True).values_list(
        "id", flat=True
    )
    assert sorted(ids) == sorted(expected)
    assert all(row["genre"] is None and row["style"] == "Cubism" for row in data["results"])


def test_label_source_filter_finds_curator_labels(client, imported_demo):
    art = Artwork.objects.first()
    genre_label_add(art, Genre.objects.get(name="cityscape"), source=LabelSource.CURATOR)
    data = client.get("/api/artworks/", {"label_source": "curator"}).json()
    assert [row["id"] for row in data["results"]] == [art.id]


def test_pagination_pages_through_everything(client, imported_demo):
    seen = []
    for number in (1, 2, 3):
        response = client.get(reverse("catalog:artwork-list"), {"page": number})
        seen += _ids_from_page(response)
    assert sorted(seen) == sorted(Artwork.objects.values_list("id", flat=True))
    assert (
        'rel="next"'
        not in client.get(reverse("catalog:artwork-list"), {"page": 3}).content.decode()
    )


def test_invalid_filter_value_is_a_400_with_a_reason(client, imported_demo):
    response = client.get("/api/artworks/", {"style": "Not_A_Style"})
    assert response.status_code == 400
    assert "style" in response.json()
    response = client.get("/api/artworks/", {"year_min": "soon"})
    assert response.status_code == 400 and "year_min" in response.json()


def test_invalid_filter_in_ui_shows_the_error_not_a_crash(client, imported_demo):
    response = client.get(reverse("catalog:artwork-list"), {"style": "Not_A_Style"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_artwork_page_shows_metadata_and_label_history(client, imported_demo):
    art = Artwork.objects.exclude(genre=None).first()
    genre_label_add(
        art,
        Genre.objects.get(name="still_life"),
        source=LabelSource.VQA,
        confidence=0.42,
        model_id="tiny-vqa",
    )
    html = client.get(reverse("catalog:artwork-detail", args=[art.id])).content.decode()
    assert art.title in html and art.artist.name in html and art.path in html
    assert "WikiArt" in html and "VQA model" in html and "0.42" in html and "tiny-vqa" in html
    assert art.image.url in html


def test_missing_artwork_is_a_404(client, db):
    assert client.get(reverse("catalog:artwork-detail", args=[999999])).status_code == 404


def test_api_artwork_detail_labels_and_vocabularies(client, imported_demo):
    art = Artwork.objects.exclude(genre=None).first()
    detail = client.get(f"/api/artworks/{art.id}/").json()
    assert detail["path"] == art.path and detail["genre"] == art.genre.name
    assert detail["thumbnail"].startswith("http://testserver/media/thumbs/")
    labels = client.get(f"/api/artworks/{art.id}/labels/").json()
    assert [lab["source"] for lab in labels] == ["wikiart"]
    styles = client.get("/api/styles/").json()
    assert len(styles) == 27
    cubism = next(s for s in styles if s["name"] == "Cubism")
    assert cubism["artwork_count"] == Artwork.objects.filter(style__name="Cubism").count()
    artist = client.get("/api/artists/ada-vermeil/").json()
    assert artist["name"] == "Ada Vermeil"
    assert len(client.get("/api/genres/").json()) == 10


def test_api_is_read_only_for_anonymous_users(client, imported_demo):
    art = Artwork.objects.first()
    assert client.post("/api/artworks/", {}).status_code in (401, 403)
    assert client.delete(f"/api/artworks/{art.id}/").status_code in (401, 403)


def test_openapi_schema_and_docs_page_work_offline(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/artworks/" in paths and "/api/artworks/{id}/labels/" in paths
    params = {p["name"] for p in paths["/api/artworks/"]["get"]["parameters"]}
    assert {"style", "genre", "has_genre", "label_source", "artist", "q"} <= params
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn.jsdelivr" not in docs


def test_media_files_are_served(client, imported_demo):
    art = Artwork.objects.first()
    response = client.get(art.thumbnail.url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:2] == b"\xff\xd8"  # JPEG


def test_long_select_renders_what_djangos_select_renders():
    import re

    from django import forms

    from catalog.filters import LongSelect

    choices = [("", "---------"), ("a&b", "Odilon <Redon>"), ("c", 'Claude "M"')]
    for value in ("c", "a&b", ""):
        django_html = forms.Select(choices=choices).render("artist", value, {"id": "id_artist"})
        ours = LongSelect(choices=choices).render("artist", value, {"id": "id_artist"})
        assert re.sub(r"\s+", "", ours) == re.sub(r"\s+", "", django_html)


@pytest.mark.django_db
def test_long_select_over_a_queryset_matches_and_sees_new_rows():
    import re

    from django import forms

    from catalog.filters import LongSelect
    from catalog.models import Artist

    Artist.objects.create(slug="odilon-redon", name="Odilon <Redon>")
    Artist.objects.create(slug="a-b", name='A "B" & C')

    def both(value):
        field = forms.ModelChoiceField(Artist.objects.all(), to_field_name="slug")
        django_html = forms.Select(choices=field.choices).render("artist", value)
        field.widget = LongSelect()
        field.widget.choices = field.choices
        return re.sub(r"\s+", "", field.widget.render("artist", value)), re.sub(
            r"\s+", "", django_html
        )

    ours, django_html = both("a-b")
    assert ours == django_html and 'value="a-b"selected' in ours
    Artist.objects.create(slug="new-artist", name="New Artist")
    ours, django_html = both("new-artist")  # cached options, yet the new row is there
    assert ours == django_html and "NewArtist" in ours


@pytest.mark.django_db
def test_label_selects_are_cached_by_label_generation(django_assert_num_queries):
    from django import forms

    from catalog.filters import LongSelect
    from catalog.models import Artist

    artist = Artist.objects.create(slug="xavier-m", name="Xavier M")

    def render():
        field = forms.ModelChoiceField(Artist.objects.all(), to_field_name="slug")
        field.widget = LongSelect()
        field.widget.choices = field.choices
        return field.widget.render("artist", "")

    assert "Xavier M" in render()
    with django_assert_num_queries(0):  # cached, and no query to know it is current
        assert "Xavier M" in render()
    artist.name = "Yvonne M"
    artist.save()  # a new label generation: the options are rebuilt at once
    assert "Yvonne M" in render() and "Xavier M" not in render()


def test_filter_form_renders_as_djangos_own_selects_would(imported_demo):
    import re

    from django import forms

    from catalog.filters import ArtworkFilter, LongSelect
    from catalog.models import Artwork, Style

    style = Style.objects.order_by("name").last()
    data = {"style": style.name, "has_genre": "true", "label_source": "wikiart", "split": "val"}
    form = ArtworkFilter(data, queryset=Artwork.objects.all()).form
    assert form.is_valid(), form.errors
    swapped = 0
    for name, field in form.fields.items():
        if not isinstance(field.widget, LongSelect):
            continue
        ours = str(form[name])
        field.widget = forms.Select(choices=field.widget.choices, attrs=field.widget.attrs)
        assert re.sub(r"\s+", "", ours) == re.sub(r"\s+", "", str(form[name])), name
        swapped += 1
    assert swapped == 7  # artist, style, genre, has_genre, label_source, has_image, split
    assert f'value="{style.name}" selected' in str(
        ArtworkFilter(data, queryset=Artwork.objects.all()).form["style"]
    )


def test_unfiltered_pages_take_their_count_from_the_cached_totals(client, imported_demo):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    total = Artwork.objects.count()
    style = Artwork.objects.first().style
    client.get(reverse("catalog:artwork-list"))  # fills the cached totals

    def page_count_queries(params):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("catalog:artwork-list"), params)
        counts = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith('SELECT COUNT(*) AS "__count" FROM "catalog_artwork"')
        ]
        return response, counts

    for params in ({}, {"page": 2}, {"style": "", "q": ""}):
        response, counts = page_count_queries(params)
        assert counts == [] and response.context["page"].paginator.count == total, params
    response, counts = page_count_queries({"style": style.name})
    assert len(counts) == 1
    assert response.context["page"].paginator.count == Artwork.objects.filter(style=style).count()


def test_catalog_cards_escape_and_say_what_an_artwork_lacks(client, imported_demo):
    first, second, third = Artwork.objects.order_by("pk")[:3]
    genre_label_add(first, Genre.objects.get(name="still_life"), source=LabelSource.CURATOR)
    Artwork.objects.filter(pk=second.pk).update(
        thumbnail="", year=None, title='Odd <"title"> & co', is_synthetic=False
    )
    Artwork.objects.filter(pk=third.pk).update(genre=None, genre_source="")
    page = client.get("/").content.decode()
    assert "Odd &lt;&quot;title&quot;&gt; &amp; co" in page and 'Odd <"title">' not in page
    assert '<div class="noimage" title="No image file imported">' in page
    assert '<span class="src src-curator">Curator</span>' in page
    assert "<em>no genre</em>" in page
    assert f'href="/artworks/{first.pk}/"' in page
