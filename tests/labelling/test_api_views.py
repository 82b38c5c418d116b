"""Curator API and pages: permissions, corrections, conflicts, bulk with undo, revert."""

import pytest
from django.urls import reverse

from catalog.models import Artwork, Genre, GenreLabel
from labelling.models import BulkOperation

pytestmark = pytest.mark.django_db


def _post(client, url, data):
    return client.post(url, data, content_type="application/json")


WRITE_ENDPOINTS = [
    ("post", "/api/artworks/{id}/genre/", {"genre": "portrait", "expected_version": 0}),
    ("post", "/api/artworks/{id}/accept/", {"expected_version": 0}),
    ("post", "/api/artworks/{id}/revert/", {"label_id": 1, "expected_version": 0}),
    ("post", "/api/review/bulk/", {"action": "accept", "artwork_ids": [1], "preview": False}),
    ("get", "/api/review/queue/", None),
]


@pytest.mark.parametrize(("method", "url", "data"), WRITE_ENDPOINTS)
def test_anonymous_and_plain_users_cannot_change_labels(
    client, imported_demo, plain_user, method, url, data
):
    art = Artwork.objects.first()
    url = url.format(id=art.pk)
    call = (lambda: _post(client, url, data)) if method == "post" else (lambda: client.get(url))
    assert call().status_code in (401, 403)
    client.force_login(plain_user)
    assert call().status_code == 403
    assert GenreLabel.objects.filter(source="curator").count() == 0


@pytest.mark.parametrize("page", ["labelling:review", "labelling:bulk"])
def test_review_pages_need_a_curator(client, imported_demo, plain_user, curator, page):
    response = client.get(reverse(page))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(plain_user)
    assert client.get(reverse(page)).status_code == 403
    client.force_login(curator)
    assert client.get(reverse(page)).status_code == 200


def test_curator_corrects_through_the_api(client, imported_demo, curator):
    client.force_login(curator)
    art = Artwork.objects.exclude(genre=None).first()
    response = _post(
        client,
        f"/api/artworks/{art.pk}/genre/",
        {"genre": "cityscape", "expected_version": art.label_version, "note": "sky"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["artwork"]["genre"] == "cityscape" and body["artwork"]["genre_source"] == "curator"
    assert body["label"]["user"] == "cora" and body["label"]["note"] == "sky"
    history = client.get(f"/api/artworks/{art.pk}/labels/").json()
    assert [h["source"] for h in history] == ["wikiart", "curator"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"genre": "cityscape"}, "expected_version"),
        ({"genre": "nope", "expected_version": 0}, "genre"),
        ({"genre": "land\x00scape", "expected_version": 0}, "genre"),  # PostgreSQL: no 500
        ({"genre": "cityscape", "expected_version": -1}, "expected_version"),
    ],
)
def test_bad_corrections_are_400(client, imported_demo, curator, data, field):
    client.force_login(curator)
    art = Artwork.objects.first()
    response = _post(client, f"/api/artworks/{art.pk}/genre/", data)
    assert response.status_code == 400 and field in response.json()


def test_concurrent_edit_is_a_409_conflict(client, imported_demo, curator, curator2):
    art = Artwork.objects.exclude(genre=None).first()
    seen = art.label_version
    client.force_login(curator)
    assert (
        _post(
            client,
            f"/api/artworks/{art.pk}/genre/",
            {"genre": "portrait", "expected_version": seen},
        ).status_code
        == 200
    )
    client.force_login(curator2)
    response = _post(
        client, f"/api/artworks/{art.pk}/genre/", {"genre": "landscape", "expected_version": seen}
    )
    assert response.status_code == 409
    body = response.json()
    assert "cora" in body["detail"] and body["current_genre"] == "portrait"
    assert body["current_version"] == seen + 1
    art.refresh_from_db()
    assert art.genre.name == "portrait"


def test_bulk_api_preview_apply_undo(client, imported_demo, curator):
    client.force_login(curator)
    cubism = list(
        Artwork.objects.filter(style__name="Cubism", genre__isnull=False).values_list(
            "id", "genre__name"
        )
    )
    body = {"action": "relabel", "genre": "portrait", "filters": {"style": "Cubism"}}
    preview = _post(client, "/api/review/bulk/", body).json()
    expected = [i for i, g in cubism if g != "portrait"] + [i for i, g in cubism if g == "portrait"]
    assert (
        preview["count"] == len(expected)
        and GenreLabel.objects.filter(source="curator").count() == 0
    )
    applied = _post(client, "/api/review/bulk/", {**body, "preview": False})
    assert applied.status_code == 201
    assert set(
        Artwork.objects.filter(style__name="Cubism")
        .exclude(genre=None)
        .values_list("genre__name", flat=True)
    ) == {"portrait"}
    op_id = applied.json()["operation"]
    undone = _post(client, f"/api/review/bulk/{op_id}/undo/", {})
    assert undone.status_code == 200 and undone.json()["restored"] == preview["count"]
    assert sorted(
        Artwork.objects.filter(style__name="Cubism", genre__isnull=False).values_list(
            "id", "genre__name"
        )
    ) == sorted(cubism)
    assert _post(client, f"/api/review/bulk/{op_id}/undo/", {}).status_code == 409


def test_bulk_api_validation(client, imported_demo, curator):
    client.force_login(curator)
    assert (
        _post(client, "/api/review/bulk/", {"action": "relabel", "artwork_ids": [1]}).status_code
        == 400
    )
    assert _post(client, "/api/review/bulk/", {"action": "accept"}).status_code == 400
    bad = _post(client, "/api/review/bulk/", {"action": "accept", "filters": {"style": "Nope"}})
    assert bad.status_code == 400 and "filters" in bad.json()


def test_review_queue_api_and_page(client, imported_demo, curator):
    client.force_login(curator)
    rows = client.get("/api/review/queue/", {"style": "Pop_Art", "limit": 5}).json()
    assert 0 < len(rows) <= 5 and all(r["artwork"]["style"] == "Pop_Art" for r in rows)
    assert client.get("/api/review/queue/", {"confidence_min": "x"}).status_code == 400
    html = client.get(reverse("labelling:review")).content.decode()
    assert "pick a genre" in html and 'id="review-item"' in html and "<kbd>0</kbd>" in html


def test_bulk_page_preview_apply_and_undo(client, imported_demo, curator):
    client.force_login(curator)
    preview = client.get(
        reverse("labelling:bulk"),
        {"style": "Minimalism", "action": "relabel", "target": "abstract_painting"},
    )
    changes = preview.context["changes"]
    assert changes and "would change" in preview.content.decode()
    ids = [str(c.artwork.pk) for c in changes[:3]]
    versions = {f"version_{c.artwork.pk}": str(c.artwork.label_version) for c in changes[:3]}
    response = client.post(
        reverse("labelling:bulk"),
        {
            "style": "Minimalism",
            "action": "relabel",
            "target": "abstract_painting",
            "artwork": ids,
            **versions,
        },
    )
    assert response.status_code == 302
    op = BulkOperation.objects.get()
    assert op.count == 3
    client.post(reverse("labelling:bulk-undo", args=[op.pk]))
    op.refresh_from_db()
    assert op.undone_at is not None


def test_revert_from_the_artwork_page(client, imported_demo, curator):
    client.force_login(curator)
    art = Artwork.objects.exclude(genre=None).first()
    original = art.genre
    first_label = art.genre_labels.get()
    _post(
        client,
        f"/api/artworks/{art.pk}/genre/",
        {"genre": "nude_painting", "expected_version": art.label_version},
    )
    art.refresh_from_db()
    page = client.get(reverse("catalog:artwork-detail", args=[art.pk])).content.decode()
    assert "revert to this" in page
    client.post(
        reverse("labelling:revert", args=[art.pk, first_label.pk]),
        {"expected_version": art.label_version},
    )
    art.refresh_from_db()
    assert art.genre == original and art.genre_source == "curator"
    assert Genre.objects.count() == 10


def test_bulk_page_ignores_ids_that_are_not_plain_digits(client, imported_demo, curator):
    """'²'.isdigit() is True but int('²') raises: such ids are dropped, not a 500."""
    client.force_login(curator)
    preview = client.get(
        reverse("labelling:bulk"),
        {"style": "Minimalism", "action": "relabel", "target": "abstract_painting"},
    )
    first = preview.context["changes"][0].artwork
    response = client.post(
        reverse("labelling:bulk"),
        {
            "style": "Minimalism",
            "action": "relabel",
            "target": "abstract_painting",
            "artwork": ["²", "9" * 30, str(first.pk)],
            f"version_{first.pk}": str(first.label_version),
            "version_²": "²",
        },
    )
    assert response.status_code == 302
    assert BulkOperation.objects.get().count == 1


def test_bulk_accept_of_labels_that_stay_is_not_announced_as_change(client, imported_demo, curator):
    """Accepting WikiArt labels changes no genre: the preview says how many are only
    confirmed, and the API gives both counts."""
    client.force_login(curator)
    wikiart = Artwork.objects.filter(style__name="Pop_Art", genre_source="wikiart")
    n = wikiart.count()
    assert n > 3
    page = client.get(reverse("labelling:bulk"), {"style": "Pop_Art", "action": "accept"})
    counts = page.context["counts"]
    assert counts == {"total": n, "genre": 0, "confirm": n}
    text = " ".join(page.content.decode().split())
    assert f"Preview: 0 artworks would change genre; {n} would keep their genre" in text
    body = {"action": "accept", "filters": {"style": "Pop_Art"}, "preview": True}
    data = _post(client, "/api/review/bulk/", body).json()
    assert (data["count"], data["genre_changes"], data["confirmations"]) == (n, 0, n)
    assert not any(c["changes_genre"] for c in data["changes"])
    relabel = client.get(
        reverse("labelling:bulk"),
        {"style": "Pop_Art", "action": "relabel", "target": "abstract_painting"},
    ).context["counts"]
    already = wikiart.filter(genre__name="abstract_painting").count()
    assert relabel["confirm"] == already and relabel["genre"] >= n - already
    assert relabel["total"] == relabel["genre"] + relabel["confirm"]


def test_bulk_page_and_api_refuse_more_than_the_limit_alike(
    client, imported_demo, curator, monkeypatch
):
    """One limit (`services.BULK_MAX`) for the page and the API: past it both say so, and
    the page shows no preview of an arbitrary part of the filter."""
    from labelling import services

    monkeypatch.setattr(services, "BULK_MAX", 2)
    client.force_login(curator)
    candidates = Artwork.objects.exclude(genre=None).exclude(genre_source="curator").count()
    assert candidates > 2
    page = client.get(reverse("labelling:bulk"), {"action": "accept"})
    text = page.content.decode()
    assert page.status_code == 200
    assert "More than 2 artworks match; narrow the filters (at most 2 at once)." in text
    assert 'name="artwork"' not in text and "Preview:" not in text
    api = _post(client, "/api/review/bulk/", {"action": "accept", "filters": {"has_genre": "true"}})
    assert api.status_code == 400
    assert api.json() == {"filters": ["more than 2 artworks match; narrow the filters"]}
    # Within the limit the page previews every matching artwork.
    monkeypatch.setattr(services, "BULK_MAX", candidates)
    page = client.get(reverse("labelling:bulk"), {"action": "accept"})
    assert page.content.decode().count('name="artwork"') == len(
        services.bulk_plan_select("accept", filters={})
    )


def test_review_filter_shows_the_confidence_range_as_form_fields(client, imported_demo, curator):
    client.force_login(curator)
    text = client.get(reverse("labelling:review"), {"confidence_max": "0.5"}).content.decode()
    assert 'name="confidence_min"' in text and 'name="confidence_max"' in text
    assert 'value="0.5"' in text
    refused = client.get(reverse("labelling:review"), {"confidence_max": "2"}).content.decode()
    assert "a number between 0 and 1" in refused
