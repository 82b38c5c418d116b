"""Private stays private (issue #15 item 5): files of unfinished generations go away,
generation images are served through their permission check, LoRA exports count toward
the cache budget and go with their LoRA, and no API answer carries a server path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from safetensors.torch import save_file

from config.public import scrub, scrub_bytes, server_roots
from generation import selectors, services
from generation.models import Generation, LoraCacheEntry, LoraStatus
from generation.services import lora_cache, rendering, requests
from jobs.models import Job, JobStatus
from tests.factories import generation_create, lora_entry_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("gen_settings")]


def _generation(user, status: str, *, files: bool = True, **fields) -> Generation:
    job = Job.objects.create(kind=services.GENERATION_JOB, user=user, status=status)
    generation = generation_create(
        user=user,
        job=job,
        phase=Generation.Phase.DONE if status == JobStatus.SUCCEEDED else Generation.Phase.RENDER,
        **fields,
    )
    if files:
        for field, suffix in (("image", ""), ("baseline_image", "-baseline")):
            name = f"generations/{generation.pk}-7{suffix}.png"
            default_storage.save(name, _png())
            setattr(generation, field, name)
        generation.save(update_fields=["image", "baseline_image"])
    return generation


def _png():
    from django.core.files.base import ContentFile

    return ContentFile(b"\x89PNG\r\n\x1a\n pixels")


def _on_disk(generation: Generation) -> list[str]:
    names = [f"generations/{generation.pk}-7.png", f"generations/{generation.pk}-7-baseline.png"]
    return [n for n in names if default_storage.exists(n)]


def test_cancelling_a_generation_deletes_its_files(user):
    generation = _generation(user, JobStatus.QUEUED)
    assert len(_on_disk(generation)) == 2
    cancelled = services.generation_cancel(generation)
    assert cancelled.status == JobStatus.CANCELLED
    assert _on_disk(generation) == [] and not cancelled.image and not cancelled.baseline_image
    generation.refresh_from_db()
    assert generation.image.name == generation.baseline_image.name == ""


def test_a_render_that_fails_half_way_leaves_no_file(user, monkeypatch):
    generation = _generation(user, JobStatus.RUNNING, files=False)

    def render_then_crash(generation_id, report):
        g = Generation.objects.get(pk=generation_id)
        rendering._save_png(g.image, f"{g.pk}-7.png", _tiny_image(), {"prompt": "x"})
        g.save(update_fields=["image"])
        assert _on_disk(g)
        raise RuntimeError("out of memory while rendering the baseline")

    monkeypatch.setattr(rendering, "_generation_render", render_then_crash)
    with pytest.raises(RuntimeError):
        services.generation_render(generation.pk, lambda *a, **k: None)
    generation.refresh_from_db()
    assert _on_disk(generation) == [] and not generation.image


def _tiny_image():
    from PIL import Image

    return Image.new("RGB", (8, 8))


def test_failed_and_cancelled_generations_lose_their_files_finished_ones_keep_them(user):
    failed = _generation(user, JobStatus.FAILED)  # its worker died after writing them
    cancelled = _generation(user, JobStatus.CANCELLED)
    done = _generation(user, JobStatus.SUCCEEDED)
    assert requests.generation_files_sweep() == 4
    assert _on_disk(failed) == [] == _on_disk(cancelled)
    assert len(_on_disk(done)) == 2
    assert requests.generation_files_sweep() == 0


def test_retry_starts_without_the_files_of_the_failed_attempt(user):
    failed = _generation(user, JobStatus.FAILED)
    services.generation_retry(failed, user)
    assert _on_disk(failed) == []


def test_a_rerendered_file_replaces_the_one_a_dead_attempt_left(user):
    generation = _generation(user, JobStatus.RUNNING, files=False)
    default_storage.save(f"generations/{generation.pk}-7.png", _png())  # not recorded
    rendering._save_png(generation.image, f"{generation.pk}-7.png", _tiny_image(), {})
    assert generation.image.name == f"generations/{generation.pk}-7.png"  # no "_abc123"
    assert sorted(p.name for p in Path(default_storage.location, "generations").iterdir()) == [
        f"{generation.pk}-7.png"
    ]


def test_generation_images_need_the_permission_even_without_django_serving_media(
    client, user, settings
):
    """MYTHRAGEN_SERVE_MEDIA=false hands other media to a web server; generation images
    still go through Django's check (their folder must not be served by the web server)."""
    settings.MYTHRAGEN_SERVE_MEDIA = settings.SERVE_MEDIA = False
    public = _generation(user, JobStatus.SUCCEEDED)
    private = _generation(user, JobStatus.FAILED)
    assert client.get(public.image.url).status_code == 200
    assert client.get(private.image.url).status_code == 404
    default_storage.save("artworks/a.jpg", _png())
    assert client.get("/media/artworks/a.jpg").status_code == 404
    client.force_login(user)
    assert client.get(private.image.url).status_code == 200  # its owner


# --------------------------------------------------------------------------- LoRA exports


def _entry(key: str, *, used_days_ago: int) -> LoraCacheEntry:
    entry = lora_entry_create(key, used_days_ago=used_days_ago)
    path = lora_cache.lora_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"unet.a.lora.down.weight": torch.zeros(64, 64)}, str(path))
    LoraCacheEntry.objects.filter(pk=entry.pk).update(size_bytes=path.stat().st_size)
    entry.refresh_from_db()
    return entry


def test_exports_count_toward_the_budget_and_go_with_their_lora(gen_settings):
    old, new = _entry("a", used_days_ago=9), _entry("b", used_days_ago=1)
    one = old.size_bytes
    gen_settings.LORA_CACHE_BUDGET_MB = 0  # no limit yet
    export = services.lora_export(new, "diffusers")
    new.refresh_from_db()
    assert new.size_bytes == one + export.stat().st_size == lora_cache.lora_disk_bytes(new)
    assert selectors.lora_cache_stats()["size_bytes"] == old.size_bytes + new.size_bytes

    # With a budget that holds the two files but not the export too, the export evicts
    # the least recently used LoRA (never the one being downloaded).
    budget = old.size_bytes + one + export.stat().st_size // 2
    gen_settings.LORA_CACHE_BUDGET_MB = 1
    report = services.lora_cache_evict(budget_bytes=budget)
    assert report.evicted == [old.key]
    old.refresh_from_db()
    assert old.status == LoraStatus.EVICTED and not lora_cache.lora_path(old).exists()

    services.lora_evict(new)
    assert not export.exists() and lora_cache.lora_export_paths(new) == []
    new.refresh_from_db()
    assert new.status == LoraStatus.EVICTED and new.size_bytes == 0


def test_an_export_never_evicts_the_lora_it_exports(gen_settings):
    only, other = _entry("c", used_days_ago=1), _entry("d", used_days_ago=30)
    gen_settings.LORA_CACHE_BUDGET_MB = 1e-5  # ~10 bytes: nothing fits
    path = services.lora_export(only, "diffusers")
    only.refresh_from_db()
    other.refresh_from_db()
    assert only.status == LoraStatus.READY and path.is_file()  # being downloaded
    assert other.status == LoraStatus.EVICTED


def test_a_lora_whose_file_vanished_loses_its_exports_too(gen_settings):
    entry = _entry("e", used_days_ago=1)
    export = services.lora_export(entry, "diffusers")
    lora_cache.lora_path(entry).unlink()
    assert not lora_cache.lora_is_ready(entry)
    assert not export.exists()


# --------------------------------------------------------------------------- server paths


def test_scrub_replaces_server_paths_by_their_last_component(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    model = f"{tmp_path}/models/tiny-sd15"
    assert str(tmp_path) in server_roots() or str(tmp_path / "models") in server_roots()
    data = {
        "base_model": model,
        "fingerprint": f"{model}#de13617",
        "hub": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "url": "/media/generations/1-7.png",
        "nested": [f"loaded {settings.LORA_DIR}/loras/abc.safetensors, ok"],
    }
    assert scrub(data) == {
        "base_model": "tiny-sd15",
        "fingerprint": "tiny-sd15#de13617",
        "hub": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "url": "/media/generations/1-7.png",
        "nested": ["loaded abc.safetensors, ok"],
    }
    raw = json.dumps(data).encode()
    assert json.loads(scrub_bytes(raw)) == scrub(data)
    assert scrub_bytes(b'{"a": "/media/x"}') == b'{"a": "/media/x"}'


def test_no_api_answer_carries_a_server_path(client, user, gen_settings):
    """Anonymous visitors (and signed-in users) read model names, never folders: a
    finished generation whose records hold every kind of path the services write."""
    model = str(gen_settings.SD_MODEL)
    lora_file = str(lora_cache.lora_dir() / "loras" / ("f" * 64 + ".safetensors"))
    entry = LoraCacheEntry.objects.create(
        key="f" * 64,
        kind="artist_style",
        base_model=model,
        base_model_fingerprint=f"{model}#abc",
        code_version="v",
        status=LoraStatus.READY,
        train_info={"output_path": lora_file, "base": model},
    )
    generation = _generation(
        user,
        JobStatus.SUCCEEDED,
        base_model=model,
        provenance={"base_model": model, "base_model_fingerprint": f"{model}#abc"},
        retrieval={"model_id": f"{gen_settings.MODELS_DIR}/tiny-blip2-retrieval", "sets": {}},
        lora_artist_style=entry,
    )
    Job.objects.filter(pk=generation.job_id).update(result={"loaded": model, "file": lora_file})
    roots = server_roots()
    assert any(model.startswith(r) for r in roots)
    other = get_user_model().objects.create_user("olga", "", "pw")
    for viewer in (None, other, user):
        client.logout()
        if viewer:
            client.force_login(viewer)
        for url in (
            "/api/generations/",
            f"/api/generations/{generation.pk}/",
            "/api/loras/",
            f"/api/loras/{entry.key}/",
            "/api/jobs/",
            "/api/index/",
        ):
            response = client.get(url)
            body = response.content.decode()
            assert not [r for r in roots if r in body], (url, body[:500])
        if viewer is user:
            assert "tiny-sd15" in client.get(f"/api/generations/{generation.pk}/").content.decode()
