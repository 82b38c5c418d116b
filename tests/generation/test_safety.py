"""Stable Diffusion's safety checker in the render phase: the on/off rule, verdicts stored
in the database and the PNG, and flagged images withheld from everyone but their owner
and staff on the gallery, the generation pages and the API."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from generation import selectors, services
from generation.models import Generation
from generation.services import rendering
from jobs.models import JobStatus
from mlcore.stand_in import MARKER

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("gen_settings")]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"
NOTICE = "flagged by the safety checker: only you can see it"


@pytest.fixture(scope="session")
def unmarked_sd(tiny_models_dir, tmp_path_factory):
    """The tiny SD pipeline without its stand-in marker: to the rule, a real base model."""
    target = tmp_path_factory.mktemp("unmarked") / "sd15"
    shutil.copytree(tiny_models_dir / "tiny-sd15", target)
    (target / MARKER).unlink()
    return target


@pytest.fixture(scope="session")
def flagging_checker(tmp_path_factory):
    """A tiny safety checker that flags every image (the real class, thresholds below 0)."""
    from generation.ml.tiny import build_tiny_safety_checker

    return build_tiny_safety_checker(
        tmp_path_factory.mktemp("checkers") / "flags-always", flags="always"
    )


@pytest.fixture(autouse=True)
def _fresh_checkers():
    from generation.ml.safety import clear_safety_checkers

    clear_safety_checkers()
    yield
    clear_safety_checkers()


@pytest.fixture
def checker_on(gen_settings, unmarked_sd, tiny_models_dir):
    """A base model that is not the tiny stand-in: the checker (never flagging) is on."""
    gen_settings.SD_MODEL = str(unmarked_sd)
    gen_settings.SAFETY_CHECKER = "auto"
    gen_settings.SAFETY_CHECKER_MODEL = str(tiny_models_dir / "tiny-safety-checker")
    return gen_settings


def _render(eager, user, **overrides) -> Generation:
    """One request run inline: one LoRA (artist + style) mixed in, and the baseline."""
    values = {
        "prompt": PROMPT,
        "seed": 11,
        "with_baseline": True,
        "weight_artist_style": 0.8,
        "weight_genre_style": 0.0,
    }
    values.update(overrides)
    with eager():
        generation = services.generation_request(user, services.GenerationParams(**values))
    generation.refresh_from_db()
    return generation


def _api(client, generation) -> dict:
    response = client.get(f"/api/generations/{generation.pk}/")
    assert response.status_code == 200
    return response.json()


def _listed(client, generation) -> dict:
    rows = client.get("/api/generations/").json()["results"]
    return next(r for r in rows if r["id"] == generation.pk)


def test_the_rule_on_unless_tiny_or_off(gen_settings, unmarked_sd):
    state = services.safety_checker_state()  # gen_settings: the tiny SD stand-in
    assert not state.on and state.note == "safety checker off: tiny stand-in model"
    assert state.recorded == "off: tiny stand-in model"
    gen_settings.SD_MODEL = str(unmarked_sd)
    state = services.safety_checker_state()
    assert state.on and state.recorded == gen_settings.SAFETY_CHECKER_MODEL
    assert gen_settings.SAFETY_CHECKER_MODEL == "CompVis/stable-diffusion-safety-checker"
    gen_settings.SAFETY_CHECKER = "off"
    state = services.safety_checker_state()
    assert not state.on and state.recorded == "off: MYTHRAGEN_SAFETY_CHECKER=off"
    assert services.SafetyState.from_recorded(state.recorded) == services.SafetyState(
        False, "", "MYTHRAGEN_SAFETY_CHECKER=off"
    )


def test_flagged_images_are_stored_flagged_and_shown_only_to_owner_and_staff(
    client, indexed_demo, eager, user, checker_on, flagging_checker
):
    from generation.ml.provenance import read_png_parameters, read_png_provenance

    checker_on.SAFETY_CHECKER_MODEL = str(flagging_checker)
    generation = _render(eager, user)
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    assert generation.image_flagged and generation.baseline_flagged and generation.nsfw_flagged
    assert not generation.is_tiny and generation.safety_checker == str(flagging_checker)
    assert generation.safety["image"]["flagged"] and generation.safety["image"]["bad_concepts"]
    assert generation.safety["baseline"]["flagged"]
    # Provenance: the same verdict in the database and in each PNG; A1111's text untouched.
    # (Public: the checker's folder reads as its name, no server path.)
    assert generation.provenance["safety_checker"] == flagging_checker.name
    assert generation.provenance["flagged"] is True
    assert read_png_provenance(generation.image.path) == generation.provenance
    baseline = read_png_provenance(generation.baseline_image.path)
    assert baseline["flagged"] is True and baseline["baseline_of"] == generation.pk
    parameters = read_png_parameters(generation.image.path)
    assert "Seed: 11" in parameters and "safety" not in parameters.lower()
    # The files keep the original pixels and carry an unguessable name (a second guard:
    # generation images are served through a permission check).
    for field in (generation.image, generation.baseline_image):
        name = field.name.rsplit("/", 1)[-1]
        assert name.startswith(f"{generation.pk}-11") and len(name) > 40
    # Its job's result names no withheld file.
    assert generation.job.result["image"] is None
    assert generation.job.result["flagged"] == {"image": True, "baseline": True}

    urls = [generation.image.url, generation.baseline_image.url]
    other = get_user_model().objects.create_user("olga", "", "pw")
    for viewer in (None, other):  # anonymous, then another user
        client.logout()
        if viewer:
            client.force_login(viewer)
        gallery = client.get(reverse("generation:gallery")).content.decode()
        assert PROMPT not in gallery and not any(u in gallery for u in urls)
        for page in ("generation:detail", "generation:result"):
            body = client.get(reverse(page, args=[generation.pk])).content.decode()
            assert "Image withheld: flagged by the safety checker" in body
            assert not any(u in body for u in urls) and NOTICE not in body
        for data in (_api(client, generation), _listed(client, generation)):
            assert data["image"] is None and data["baseline_image"] is None
            assert data["withheld"] == {
                "image": "flagged by the safety checker",
                "baseline_image": "flagged by the safety checker",
            }
            assert data["safety"]["image_flagged"] and data["safety"]["notice"] == ""
            assert not any(u in str(data) for u in urls)
        for url in urls:  # the files themselves, even with the name known
            assert client.get(url).status_code == 404

    client.force_login(user)  # the owner sees both, with the notice
    gallery = client.get(reverse("generation:gallery")).content.decode()
    assert generation.image.url in gallery and "Flagged by the safety checker" in gallery
    body = client.get(reverse("generation:detail", args=[generation.pk])).content.decode()
    assert all(u in body for u in urls) and "Flagged by the safety checker: only you" in body
    data = _api(client, generation)
    assert data["image"].endswith(generation.image.url) and data["withheld"] == {}
    assert data["safety"]["notice"] == NOTICE
    assert data["safety"]["checker"] == flagging_checker.name  # API answers: no server path
    for url in urls:
        served = client.get(url)
        assert served.status_code == 200 and served["Cache-Control"] == "private, no-store"
        with generation.image.storage.open(url.removeprefix("/media/"), "rb") as fh:
            assert b"".join(served.streaming_content) == fh.read()

    admin = get_user_model().objects.create_user("boss", "", "pw", is_staff=True)
    client.force_login(admin)
    body = client.get(reverse("generation:result", args=[generation.pk])).content.decode()
    assert all(u in body for u in urls) and "only its owner and staff" in body
    assert _api(client, generation)["withheld"] == {}
    assert all(client.get(u).status_code == 200 for u in urls)
    assert generation in selectors.gallery_list(admin)


def test_unflagged_images_are_public_with_the_check_recorded(
    client, indexed_demo, eager, user, checker_on
):
    generation = _render(eager, user, weight_artist_style=0.0)
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    assert not generation.image_flagged and not generation.baseline_flagged
    assert generation.safety_checker == checker_on.SAFETY_CHECKER_MODEL
    assert generation.provenance["flagged"] is False
    assert generation.provenance["safety_checker"] == Path(checker_on.SAFETY_CHECKER_MODEL).name
    assert generation.image.name.endswith(f"/{generation.pk}-11.png")
    client.logout()
    gallery = client.get(reverse("generation:gallery")).content.decode()
    assert generation.image.url in gallery
    served = client.get(generation.image.url)  # public and finished: anyone, cacheable
    assert served.status_code == 200 and served["Cache-Control"].startswith("public")
    data = _api(client, generation)
    assert data["image"].endswith(generation.image.url) and data["withheld"] == {}
    checker = Path(checker_on.SAFETY_CHECKER_MODEL).name  # answers name no server folder
    assert data["safety"]["note"] == f"safety checker on ({checker})"


def test_off_setting_skips_the_checker_and_says_off(
    client, indexed_demo, eager, user, checker_on, monkeypatch
):
    def never_loaded():
        raise AssertionError("the checker is off: it must not load")

    checker_on.SAFETY_CHECKER = "off"
    monkeypatch.setattr(rendering, "safety_checker_get", never_loaded)
    generation = _render(eager, user, weight_artist_style=0.0, with_baseline=False)
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    assert generation.provenance["safety_checker"] == "off: MYTHRAGEN_SAFETY_CHECKER=off"
    assert generation.provenance["flagged"] is None and not generation.image_flagged
    body = client.get(reverse("generation:result", args=[generation.pk])).content.decode()
    assert "Safety checker off: MYTHRAGEN_SAFETY_CHECKER=off" in body


def test_tiny_sd_turns_the_checker_off_and_the_pages_say_so(
    client, indexed_demo, eager, user, gen_settings, monkeypatch
):
    monkeypatch.setattr(rendering, "safety_checker_get", lambda: pytest.fail("checker loaded"))
    note = "safety checker off: tiny stand-in model"
    client.force_login(user)
    page = client.get(reverse("generation:generate")).content.decode()
    assert "Safety checker off: tiny stand-in model" in page
    generation = _render(eager, user, weight_artist_style=0.0, with_baseline=False)
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    assert generation.is_tiny and generation.safety_checker == "off: tiny stand-in model"
    assert generation.provenance["safety_checker"] == "off: tiny stand-in model"
    for name in ("generation:detail", "generation:result"):
        body = client.get(reverse(name, args=[generation.pk])).content.decode()
        assert "Safety checker off: tiny stand-in model" in body
    assert _api(client, generation)["safety"]["note"] == note
    gallery = client.get(reverse("generation:gallery")).content.decode()
    assert "Safety checker off: tiny stand-in model" in gallery


def test_a_missing_checker_fails_the_job_naming_its_setting(
    indexed_demo, eager, user, checker_on, tmp_path
):
    checker_on.SAFETY_CHECKER_MODEL = str(tmp_path / "no-such-checker")
    generation = _render(eager, user, weight_artist_style=0.0)
    assert generation.job.status == JobStatus.FAILED
    assert "MYTHRAGEN_SAFETY_CHECKER_MODEL" in generation.job.error
    assert "safety checker" in generation.job.error
    assert not generation.image and generation.phase != Generation.Phase.DONE
