"""A client generated from /api/schema/ by openapi-python-client works with no edits.

The client is generated here, from the schema the running code serves, imported module by
module, and every one of its operations is performed against a live server: search by
prompt and by uploaded image, a generation with filters (trained and rendered inline on
the tiny models), the review and bulk operations, refusals (400, 409, 429) parsed into
their schemas, token authentication obtained through the client itself.
"""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from PIL import Image

from catalog.models import Artwork
from retrieval import catalog_embedding
from tests.generation.helpers import tiny_generation_settings

pytestmark = [pytest.mark.django_db(transaction=True)]

PACKAGE = "mythra_gen_api_client"


@pytest.fixture(scope="module")
def api_client_package(tmp_path_factory, django_db_blocker):
    """The client package, generated from the served schema (module-scoped: ~10 s)."""
    pytest.importorskip("openapi_python_client", reason="openapi-python-client (dev extra)")
    tool = Path(sys.executable).parent / "openapi-python-client"
    if not tool.exists():
        pytest.skip("the openapi-python-client command is not installed beside this Python")
    root = tmp_path_factory.mktemp("client")
    schema = root / "schema.json"
    with django_db_blocker.unblock():
        # --fail-on-warn: a schema drf-spectacular has doubts about fails here first.
        call_command(
            "spectacular", "--format", "openapi-json", "--file", str(schema), "--fail-on-warn"
        )
    (root / "config.yaml").write_text("post_hooks: []\n")
    out = subprocess.run(
        [str(tool), "generate", "--path", str(schema), "--output-path", str(root / "pkg")]
        + ["--meta", "none", "--config", str(root / "config.yaml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Generated with no warning (a skipped endpoint or model would be one).
    assert "Warning" not in out.stdout + out.stderr, out.stdout + out.stderr
    package = root / PACKAGE
    shutil.move(str(root / "pkg"), str(package))
    sys.path.insert(0, str(root))
    yield package
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _modules(package: Path) -> list[str]:
    return sorted(
        ".".join((PACKAGE, *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        for p in package.rglob("*.py")
    )


def test_every_generated_module_imports(api_client_package):
    names = _modules(api_client_package)
    assert len(names) > 60, names
    for name in names:
        importlib.import_module(name)  # each write body once, typed (no NameError)


@pytest.fixture
def tiny_generation(settings, tmp_path, tiny_models_dir):
    tiny_generation_settings(
        settings,
        tiny_models_dir,
        tmp_path / "loras",
        LORA_STEPS=4,
        LORA_RANK=4,
        GEN_STEPS=2,
        GEN_K=3,
    )
    settings.RETRIEVAL_EMBEDDER = "blip2"  # an embedder with an image side
    settings.RETRIEVAL_BLIP2_MODEL = str(tiny_models_dir / "tiny-blip2-retrieval")
    from celery_app import app

    app.conf.task_always_eager = True  # a generation trains and renders inside its request
    yield settings
    app.conf.task_always_eager = False


def _png(artwork: Artwork) -> bytes:
    with artwork.image.open("rb") as fh:
        image = Image.open(fh).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_the_generated_client_performs_every_operation(
    api_client_package, live_server, imported_demo, tiny_generation
):
    from django.contrib.auth import get_user_model

    from retrieval import services as retrieval_services

    catalog_embedding.embed_catalog()
    retrieval_services.index_rebuild()
    get_user_model().objects.create_superuser("admin", "", "admin-pw")

    c = importlib.import_module(PACKAGE)
    api = {
        name.rsplit(".", 1)[1]: importlib.import_module(name)
        for name in _modules(api_client_package)
        if ".api." in name and name.count(".") == 3
    }
    m = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")
    used: set[str] = set()

    def call(operation: str, /, **kwargs):
        used.add(operation)
        return api[operation].sync_detailed(**kwargs)

    # Token authentication through the client itself; writes then need no CSRF token.
    anonymous = c.Client(base_url=live_server.url, raise_on_unexpected_status=True)
    got = call(
        "auth_token_create",
        client=anonymous,
        body=m.TokenRequestRequest(username="admin", password="admin-pw"),
    )
    assert got.status_code == 200 and isinstance(got.parsed, m.Token), got.content
    client = c.AuthenticatedClient(
        base_url=live_server.url, token=got.parsed.token, prefix="Token", timeout=300.0
    )

    # The catalog.
    ukiyo = Artwork.objects.filter(style__name="Ukiyo_e").order_by("id")
    art = ukiyo.first()
    page = call("artworks_list", client=client, style="Ukiyo_e", page_size=5).parsed
    assert isinstance(page, m.PaginatedArtworkList) and page.count == ukiyo.count()
    assert {a.style for a in page.results} == {"Ukiyo_e"}
    assert call("artworks_retrieve", client=client, id=art.pk).parsed.title == art.title
    labels = call("artworks_labels_list", client=client, id=art.pk).parsed
    assert all(isinstance(label, m.GenreLabel) for label in labels)
    artists = call("artists_list", client=client).parsed
    assert art.artist.slug in {a.slug for a in artists.results}
    one = call("artists_retrieve", client=client, slug=art.artist.slug).parsed
    assert one.name == art.artist.name
    assert "Ukiyo_e" in {s.name for s in call("styles_list", client=client).parsed}
    assert call("styles_retrieve", client=client, name="Ukiyo_e").parsed.display_name == "Ukiyo e"
    assert "landscape" in {g.name for g in call("genres_list", client=client).parsed}
    assert call("genres_retrieve", client=client, name="landscape").parsed.name == "landscape"

    # Search by prompt (GET), with the reading of the prompt and its evidence.
    found = call(
        "search_retrieve", client=client, q="quiet hills by Chiyo Hanabusa, ukiyo-e", k=5
    ).parsed
    assert isinstance(found, m.SearchResponse) and len(found.results) == 5
    assert {(r.slot, r.name) for r in found.recognised} == {
        ("artist", "Chiyo Hanabusa"),
        ("style", "Ukiyo_e"),
    }
    assert all(r.evidence for r in found.recognised)
    unknown = call("search_retrieve", client=client, q="a harbour by Claude Monet", k=3).parsed
    assert [(u.slot, u.text) for u in unknown.unknown] == [("artist", "Claude Monet")]
    refused = call("search_retrieve", client=client, q="   ", k=3)
    assert refused.status_code == 400 and isinstance(refused.parsed, m.Refusal)
    assert refused.parsed.additional_properties or refused.parsed.detail

    # Search by an uploaded image (multipart, a binary file field), within one style.
    upload = m.SearchUploadRequest(
        image=types.File(payload=io.BytesIO(_png(art)), file_name="q.png", mime_type="image/png"),
        k=3,
        style="Ukiyo_e",
    )
    by_image = call("search_create", client=client, body=upload)
    assert by_image.status_code == 200, by_image.content
    assert [h.artwork.style for h in by_image.parsed.results] == ["Ukiyo_e"] * 3
    scores = [h.score for h in by_image.parsed.results]
    assert scores == sorted(scores, reverse=True) and by_image.parsed.recognised == []
    similar = call("artworks_similar_list", client=client, id=art.pk, k=3).parsed
    assert len(similar) == 3 and art.pk not in {h.artwork.id for h in similar}

    # The index and jobs.
    status = call("index_retrieve", client=client).parsed
    assert status.built is True and status.indexed == Artwork.objects.count()
    job = call("index_create", client=client)
    assert job.status_code == 202 and job.parsed.status == m.JobStatusEnum.QUEUED
    assert call("jobs_retrieve", client=client, id=job.parsed.id).parsed.kind == job.parsed.kind
    assert job.parsed.id in {j.id for j in call("jobs_list", client=client).parsed.results}

    # Review: correct, a stale version (409 with its schema), accept, revert, bulk + undo.
    queue = call("review_queue_list", client=client).parsed
    assert isinstance(queue, list)
    art.refresh_from_db()
    corrected = call(
        "artworks_genre_create",
        client=client,
        id=art.pk,
        body=m.CorrectRequest(genre="portrait", expected_version=art.label_version),
    )
    assert corrected.status_code == 200 and corrected.parsed.artwork.genre == "portrait"
    stale = call(
        "artworks_genre_create",
        client=client,
        id=art.pk,
        body=m.CorrectRequest(genre="landscape", expected_version=art.label_version),
    )
    assert stale.status_code == 409 and isinstance(stale.parsed, m.Conflict)
    assert stale.parsed.current_version == art.label_version + 1
    accepted = call(
        "artworks_accept_create",
        client=client,
        id=art.pk,
        body=m.VersionRequest(expected_version=stale.parsed.current_version),
    )
    assert accepted.status_code == 200, accepted.content
    first_label = art.genre_labels.order_by("created_at", "id").first()
    reverted = call(
        "artworks_revert_create",
        client=client,
        id=art.pk,
        body=m.RevertRequest(
            label_id=first_label.pk, expected_version=accepted.parsed.artwork.label_version
        ),
    )
    assert reverted.status_code == 200, reverted.content

    def accept_pop_art(preview: bool):
        return call(
            "review_bulk_create",
            client=client,
            body=m.BulkRequest(
                action=m.ActionEnum.ACCEPT,
                filters=m.BulkRequestFilters.from_dict({"style": "Pop_Art"}),
                preview=preview,
            ),
        )

    preview = accept_pop_art(preview=True).parsed
    assert isinstance(preview, m.BulkPreview) and preview.count > 0
    assert preview.genre_changes + preview.confirmations == preview.count
    applied = accept_pop_art(preview=False)
    assert applied.status_code == 201 and applied.parsed.count == preview.count
    undone = call("review_bulk_undo_create", client=client, op_id=applied.parsed.operation)
    assert undone.status_code == 200
    again = call("review_bulk_undo_create", client=client, op_id=applied.parsed.operation)
    assert again.status_code == 409 and isinstance(again.parsed, m.Detail)

    # A generation with filters: trained and rendered inline (tiny models), then its LoRAs.
    request = m.GenerationCreateRequest(
        prompt="quiet hills by Chiyo Hanabusa, ukiyo-e, landscape",
        seed=3,
        k=3,
        filters=m.GenerationFiltersRequest(style="Ukiyo_e"),
        with_baseline=False,
    )
    created = call("generations_create", client=client, body=request)
    assert created.status_code == 202, created.content
    generation = created.parsed
    assert isinstance(generation, m.Generation) and generation.filters.to_dict() == {
        "style": "Ukiyo_e"
    }
    done = call("generations_retrieve", client=client, id=generation.id).parsed
    assert done.status == m.JobStatusEnum.SUCCEEDED, done.job
    assert generation.id in {g.id for g in call("generations_list", client=client).parsed.results}
    loras = call("loras_list", client=client).parsed.results
    key = done.lora_artist_style.key
    assert key in {entry.key for entry in loras}
    assert call("loras_retrieve", client=client, key=key).parsed.status == m.LoraStatusEnum.READY
    download = call(
        "loras_download_retrieve", client=client, key=key, as_=m.LorasDownloadRetrieveAs.KOHYA
    )
    assert download.status_code == 200 and download.content[:8] != b"{"  # safetensors
    rerun = call("generations_rerun_create", client=client, id=generation.id)
    assert rerun.status_code == 202 and rerun.parsed.rerun_of == generation.id
    retry = call("generations_retry_create", client=client, id=generation.id)
    assert retry.status_code == 409 and isinstance(retry.parsed, m.Refusal)
    assert "succeeded" in str(retry.parsed.detail)
    cancel = call("generations_cancel_create", client=client, id=generation.id)
    assert cancel.status_code == 200 and cancel.parsed.id == generation.id

    # Refusals with their schemas: an unknown artist (400), a full queue (429).
    unknown_artist = call(
        "generations_create",
        client=client,
        body=m.GenerationCreateRequest(prompt="a harbour at dawn by Claude Monet"),
    )
    assert unknown_artist.status_code == 400
    assert "Claude Monet" in unknown_artist.parsed.additional_properties["prompt"][0]
    tiny_generation.GEN_MAX_QUEUED = 0
    full = call("generations_create", client=client, body=request)
    assert full.status_code == 429 and isinstance(full.parsed, m.Refusal)
    assert "limit is 0" in str(full.parsed.detail)

    assert call("auth_token_destroy", client=client).status_code == 204
    assert used == set(api), sorted(set(api) - used)  # every operation of the schema
