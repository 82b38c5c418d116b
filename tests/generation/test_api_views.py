"""The generation pages and API: sign-in, clear 400s, the queue limit, live state, gallery,
cancel / retry / re-run, LoRA downloads."""

from __future__ import annotations

import pytest
from django.urls import reverse
from safetensors import safe_open

from generation.models import Generation
from jobs.models import JobStatus
from tests.factories import generation_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("gen_settings")]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_only_signed_in_users_may_request(client, imported_demo):
    response = client.get(reverse("generation:generate"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.post("/api/generations/", {"prompt": PROMPT}).status_code in (401, 403)
    assert not Generation.objects.exists()


def test_api_validation_gives_clear_400s(signed_in, imported_demo):
    bad = {
        "prompt": "",
        "steps": 0,
        "width": 100,
        "weight_genre_style": 5,
        "sampler": "plms",
        "filters": {"style": "No_Such_Style"},
    }
    response = signed_in.post("/api/generations/", bad, content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["prompt"] == ["the prompt is empty"]
    assert "between 1 and" in body["steps"][0] and body["width"] == ["must be a multiple of 8"]
    assert "weight_genre_style" in body and "sampler" in body and "filters.style" in body
    wrong_type = signed_in.post(
        "/api/generations/", {"prompt": "x", "steps": "many"}, content_type="application/json"
    )
    assert wrong_type.status_code == 400 and "steps" in wrong_type.json()
    assert not Generation.objects.exists()


def test_api_request_is_accepted_queued_and_limited_per_user(signed_in, imported_demo, settings):
    settings.GEN_MAX_QUEUED = 2
    ok = signed_in.post(
        "/api/generations/", {"prompt": PROMPT, "seed": 3}, content_type="application/json"
    )
    assert ok.status_code == 202
    data = ok.json()
    assert data["status"] == "queued" and data["job"]["status"] == "queued"
    assert data["seed"] == 3 and data["width"] == 64 and data["k"] == 4
    assert data["page"] == reverse("generation:detail", args=[data["id"]])
    signed_in.post("/api/generations/", {"prompt": PROMPT}, content_type="application/json")
    third = signed_in.post("/api/generations/", {"prompt": PROMPT}, content_type="application/json")
    assert third.status_code == 429 and "limit is 2" in third.json()["detail"][0]

    # The page's live state: the generation with its job, as JSON.
    state = signed_in.get(f"/api/generations/{data['id']}/").json()
    assert state["job"]["stage"] == "" and state["status"] == "queued"
    # Cancel (a queued job stops at once), then retry; re-run needs a finished result.
    cancelled = signed_in.post(f"/api/generations/{data['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert signed_in.post(f"/api/generations/{data['id']}/rerun/").status_code == 409
    retried = signed_in.post(f"/api/generations/{data['id']}/retry/")
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    assert retried.json()["job"]["id"] != data["job"]["id"]


def test_others_cannot_control_or_see_unfinished_generations(client, signed_in, imported_demo):
    from django.contrib.auth import get_user_model

    created = signed_in.post(
        "/api/generations/", {"prompt": PROMPT}, content_type="application/json"
    )
    pk = created.json()["id"]
    other = get_user_model().objects.create_user("other", "", "pw")
    client.force_login(other)
    assert client.get(f"/api/generations/{pk}/").status_code == 404
    assert client.post(f"/api/generations/{pk}/cancel/").status_code == 404
    assert client.get(reverse("generation:detail", args=[pk])).status_code == 404


def test_form_page_requests_and_shows_errors(signed_in, imported_demo):
    page = signed_in.get(reverse("generation:generate"))
    assert page.status_code == 200
    assert b"tiny stand-in model" in page.content  # the UI says plainly a tiny model renders
    form = generation_form(prompt=PROMPT, style="Ukiyo_e", with_baseline="on")
    bad = signed_in.post(reverse("generation:generate"), {**form, "width": 72, "height": 4000})
    assert bad.status_code == 400 and b"errorlist" in bad.content or b"error" in bad.content
    response = signed_in.post(reverse("generation:generate"), form)
    generation = Generation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("generation:detail", args=[generation.pk])
    assert generation.filters == {"style": "Ukiyo_e"} and generation.with_baseline
    detail = signed_in.get(response["Location"])
    assert detail.status_code == 200 and b"job-progress" in detail.content
    assert reverse("generation-detail", args=[generation.pk]).encode() in detail.content


def test_finished_generation_in_gallery_with_result_and_lora_downloads(
    client, indexed_demo, eager, user
):
    from generation import services
    from generation.services import lora_cache

    with eager():
        generation = services.generation_request(
            user, services.GenerationParams(prompt=PROMPT, seed=5, with_baseline=True)
        )
    generation.refresh_from_db()
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error

    client.logout()  # the gallery and finished results are public
    gallery = client.get(reverse("generation:gallery"))
    assert gallery.status_code == 200 and generation.image.url.encode() in gallery.content
    fragment = client.get(reverse("generation:result", args=[generation.pk]))
    assert generation.baseline_image.url.encode() in fragment.content
    assert b"Prompt-only baseline" in fragment.content and b"Provenance" in fragment.content
    assert b"as=kohya" not in fragment.content  # LoRA downloads: signed-in users only

    key = generation.lora_artist_style.key
    url = reverse("generation:lora-download", args=[key])
    assert client.get(url).status_code == 302  # to the sign-in page
    client.force_login(user)
    kohya = client.get(url + "?as=kohya")
    assert kohya.status_code == 200 and "attachment" in kohya["Content-Disposition"]
    path = lora_cache.lora_dir() / "exports" / f"{key}-kohya.safetensors"
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())  # noqa: SIM118 - not a dict
    assert keys and all(k.startswith(("lora_unet_", "lora_te_")) for k in keys)
    api = client.get(f"/api/loras/{key}/download/?as=diffusers")
    assert api.status_code == 200
    # Keys are 64 hex digits: anything else is a 404 before the database (a NUL byte was a
    # 500 on PostgreSQL).
    for bad in ("%00", key.upper(), key[:-1], "x" * 64):
        assert client.get(f"/generate/loras/{bad}/download/").status_code == 404
    listing = client.get("/api/loras/").json()
    rows = listing["results"] if isinstance(listing, dict) else listing
    assert {r["key"] for r in rows} >= {key} and all(r["uses"] == 1 for r in rows)


def test_an_artist_the_catalog_lacks_is_named_not_trained_without(signed_in, imported_demo):
    body = {"prompt": "a harbour at dawn by Claude Monet, impressionism", "seed": 1}
    refused = signed_in.post("/api/generations/", body, content_type="application/json")
    assert refused.status_code == 400
    reasons = refused.json()["prompt"]
    assert reasons[0].startswith("“Claude Monet” is not an artist in the catalog")
    assert "without that artist" in reasons[-1]
    assert not Generation.objects.exists()
    # The page says the same and offers to go ahead; asked to, it does.
    page = signed_in.post(reverse("generation:generate"), {**_form(), "prompt": body["prompt"]})
    html = page.content.decode()
    assert page.status_code == 400 and "“Claude Monet” is not an artist in the catalog" in html
    assert 'name="allow_unknown_names"' in html
    anyway = signed_in.post(
        "/api/generations/", {**body, "allow_unknown_names": True}, content_type="application/json"
    )
    assert anyway.status_code == 202
    # A prompt naming the catalog's artists has nothing to confirm.
    ok = signed_in.post(reverse("generation:generate"), {**_form(), "prompt": PROMPT})
    assert ok.status_code == 302


def _form() -> dict:
    """The generation form as the page fills it (its initial values)."""
    from generation.forms import GenerationForm

    form = GenerationForm()
    return {
        name: field.initial
        for name, field in form.fields.items()
        if field.initial is not None and name != "with_baseline"
    }


def test_form_api_and_command_take_the_same_defaults(
    signed_in, imported_demo, settings, tmp_path, monkeypatch
):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from generation import services

    settings.GEN_SIZE, settings.GEN_STEPS, settings.GEN_K = 128, 12, 5
    form = _form()
    assert (form["width"], form["height"], form["steps"], form["k"]) == (128, 128, 12, 5)
    api = signed_in.post(
        "/api/generations/", {"prompt": PROMPT}, content_type="application/json"
    ).json()
    seen = []
    real_request = services.generation_request

    def spy(user, params, **kwargs):
        seen.append(params)
        return real_request(user, params, **kwargs)

    monkeypatch.setattr(services, "generation_request", spy)
    with pytest.raises(CommandError, match="no result within"):  # no worker runs here
        call_command(
            "generate", PROMPT, "--out", str(tmp_path), "--timeout", "0.01", stdout=StringIO()
        )
    (command,) = seen
    for name in ("width", "height", "steps", "k", "guidance", "sampler", "weight_artist_style"):
        assert getattr(command, name) == api[name] == form[name], name
