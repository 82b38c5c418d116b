"""Generation services on the tiny SD twin: retrieval sets, the LoRA cache, provenance,
crash/resume, cancel, retry, re-run, eviction."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from catalog.models import Artwork
from generation import services
from generation.models import Generation, LoraCacheEntry, LoraKind, LoraStatus
from generation.services import lora_cache, phases, rendering, retrieval_sets
from generation.services.training import lora_train
from jobs.models import Job, JobStatus
from jobs.services import JobCancelled
from tests.factories import generation_create, lora_entry_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("gen_settings")]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"


def _params(**overrides) -> services.GenerationParams:
    values = {"prompt": PROMPT, "seed": 7, "with_baseline": False}
    values.update(overrides)
    return services.GenerationParams(**values)


def _pixels(field) -> np.ndarray:
    with field.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("RGB"), dtype=np.int16)


def _run(eager, call, *args, **kwargs) -> Generation:
    """Call a service that queues a generation and run its whole job inline."""
    with eager():
        generation = call(*args, **kwargs)
    generation.refresh_from_db()
    return generation


def test_retrieval_sets_follow_the_papers_fig5(indexed_demo):
    sets = retrieval_sets.retrieval_sets_build(PROMPT, k=6)
    assert sets["parsed"]["matches"] == {
        "artist": "Chiyo Hanabusa",
        "style": "Ukiyo_e",
        "genre": "landscape",
    }
    a, b = sets["sets"]["artist_style"], sets["sets"]["genre_style"]
    assert a["attributes"] == {"artist": "Chiyo Hanabusa", "style": "Ukiyo_e"}
    assert b["attributes"] == {"genre": "landscape", "style": "Ukiyo_e"}
    assert len(a["artworks"]) == len(b["artworks"]) == 6
    works = Artwork.objects.select_related("artist", "style", "genre").in_bulk(
        [i for i, _ in a["artworks"] + b["artworks"]]
    )
    # Every artwork with both attributes of a set ranks above every other artwork.
    n_a = Artwork.objects.filter(artist__name="Chiyo Hanabusa", style__name="Ukiyo_e").count()
    top_a = [works[i] for i, _ in a["artworks"][: min(n_a, 6)]]
    assert all(w.artist.name == "Chiyo Hanabusa" and w.style.name == "Ukiyo_e" for w in top_a)
    n_b = Artwork.objects.filter(genre__name="landscape", style__name="Ukiyo_e").count()
    top_b = [works[i] for i, _ in b["artworks"][: min(n_b, 6)]]
    assert all(w.genre and w.genre.name == "landscape" and w.style.name == "Ukiyo_e" for w in top_b)
    scores = [s for _, s in a["artworks"]]
    assert scores == sorted(scores, reverse=True)
    # Only artworks with images: LoRAs train on images.
    assert all(works[i].image for i, _ in a["artworks"] + b["artworks"])


def test_retrieval_sets_read_the_prompt_once_and_search_by_label_id(indexed_demo, monkeypatch):
    from catalog.models import Artist, Genre, Style
    from retrieval.query import PromptParser

    read = []
    real_parse = PromptParser.parse
    monkeypatch.setattr(
        PromptParser, "parse", lambda self, text: read.append(text) or real_parse(self, text)
    )
    sets = retrieval_sets.retrieval_sets_build(PROMPT, k=4)
    assert read == [PROMPT]  # the sets' searches take ids: no name is written and read again
    style = Style.objects.get(name="Ukiyo_e").pk
    assert sets["sets"]["artist_style"]["labels"] == {
        "artist": Artist.objects.get(name="Chiyo Hanabusa").pk,
        "style": style,
    }
    assert sets["sets"]["genre_style"]["labels"] == {
        "genre": Genre.objects.get(name="landscape").pk,
        "style": style,
    }


def test_baseline_prompt_is_the_content_in_the_style_of_the_names():
    retrieval = {
        "parsed": {"content": "quiet hills", "matches": {"style": "Ukiyo_e", "artist": "Hokusai"}}
    }
    assert (
        retrieval_sets.baseline_prompt("x", retrieval)
        == "quiet hills, in the style of Hokusai, Ukiyo e"
    )
    assert retrieval_sets.baseline_prompt("x", {"parsed": {"content": "", "matches": {}}}) == "x"


def test_lora_mix_sums_one_lora_twice_and_clamps():
    one, other = LoraCacheEntry(pk=1, key="a"), LoraCacheEntry(pk=2, key="b")
    assert lora_cache.lora_mix([(one, 1.5), (None, 1.0), (one, 1.0), (other, -0.5)]) == [
        (one, 2.0),
        (other, -0.5),
    ]


def test_sub_collection_restricts_both_sets(indexed_demo):
    sets = retrieval_sets.retrieval_sets_build(PROMPT, k=5, filters={"style": "Impressionism"})
    ids = [i for s in sets["sets"].values() for i, _ in s["artworks"]]
    assert set(Artwork.objects.filter(pk__in=ids).values_list("style__name", flat=True)) == {
        "Impressionism"
    }


def test_lora_key_hashes_sorted_ids_settings_model_and_code():
    settings = {"rank": 32, "max_train_steps": 10, "checkpoint_every": 5}
    key = services.lora_key([3, 1, 2], "digest", settings, "sd15", "v1")
    assert key == services.lora_key([1, 2, 3], "digest", settings, "sd15", "v1")
    assert key == services.lora_key(
        [1, 2, 3], "digest", {**settings, "checkpoint_every": 99}, "sd15", "v1"
    )
    for other in (
        services.lora_key([1, 2, 4], "digest", settings, "sd15", "v1"),
        services.lora_key([1, 2, 3], "other", settings, "sd15", "v1"),
        services.lora_key([1, 2, 3], "digest", {**settings, "rank": 16}, "sd15", "v1"),
        services.lora_key([1, 2, 3], "digest", settings, "sdxl", "v1"),
        services.lora_key([1, 2, 3], "digest", settings, "sd15", "v2"),
    ):
        assert other != key


def test_validation_lists_every_problem(imported_demo):
    with pytest.raises(services.GenerationRequestError) as info:
        services.generation_params_check(
            _params(
                prompt="  ",
                steps=0,
                width=65,
                height=4096,
                weight_artist_style=3.0,
                sampler="pndm",
                k=0,
                filters={"style": "Nope"},
            )
        )
    errors = info.value.errors
    for field in ("prompt", "steps", "width", "height", "weight_artist_style", "sampler", "k"):
        assert field in errors, field
    assert "filters.style" in errors
    with pytest.raises(services.GenerationRequestError, match="unknown filter"):
        services.generation_params_check(_params(filters={"colour": "red"}))
    checked = services.generation_params_check(_params(seed=None))
    assert 0 <= checked.seed <= services.SEED_MAX and checked.width == 64


def test_request_trains_renders_and_stores_provenance_in_db_and_png(
    indexed_demo, eager, user, monkeypatch
):
    from generation.ml.provenance import read_png_parameters, read_png_provenance

    generation = _run(eager, services.generation_request, user, _params(with_baseline=True))
    job = generation.job
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert generation.phase == Generation.Phase.DONE and generation.is_tiny
    entries = [generation.lora_artist_style, generation.lora_genre_style]
    assert {e.kind for e in entries} == {LoraKind.ARTIST_STYLE, LoraKind.GENRE_STYLE}
    for entry in entries:
        entry.refresh_from_db()
        assert entry.status == LoraStatus.READY and entry.uses == 1 and entry.size_bytes > 0
        assert entry.train_info["steps"] == 6 and entry.train_info["resumed_from_step"] == 0
        assert lora_cache.lora_path(entry).is_file()
        assert entry.artwork_ids == sorted(entry.artwork_ids) and len(entry.artwork_ids) == 4

    # Provenance: the same record in the database and in the PNG's text chunks.
    with generation.image.open("rb"):
        path = generation.image.path
    from_png = read_png_provenance(path)
    assert from_png == generation.provenance
    for field in ("prompt", "seed", "sampler", "steps", "guidance", "base_model", "code_version"):
        assert from_png[field] not in (None, ""), field
    assert from_png["seed"] == 7 and from_png["sampler"] == "ddim"
    assert {(lo["key"], lo["weight"]) for lo in from_png["loras"]} == {
        (generation.lora_artist_style.key, 0.6),
        (generation.lora_genre_style.key, 0.4),
    }
    retrieved = from_png["retrieved"]["artist_style"]
    assert [r["artwork_id"] for r in retrieved] == [
        a for a, _ in generation.retrieval["sets"]["artist_style"]["artworks"]
    ]
    assert all(isinstance(r["score"], float) for r in retrieved)
    assert "<lora:" in read_png_parameters(path) and "Seed: 7" in read_png_parameters(path)
    # The baseline: no LoRA, "in the style of" the resolved attributes.
    assert generation.baseline_image
    assert "in the style of" in generation.baseline_prompt
    baseline = read_png_provenance(generation.baseline_image.path)
    assert baseline["loras"] == [] and baseline["baseline_of"] == generation.pk

    # A second request with the same sets is a cache hit: no training at all.
    import generation.ml.lora_train as lora_train

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(lora_train, "train_lora", no_training)
    second = _run(eager, services.generation_request, user, _params(seed=8))
    assert second.job.status == JobStatus.SUCCEEDED, second.job.error
    assert second.lora_artist_style_id == generation.lora_artist_style_id
    assert LoraCacheEntry.objects.count() == 2
    assert set(LoraCacheEntry.objects.values_list("uses", flat=True)) == {2}
    assert not (_pixels(second.image) == _pixels(generation.image)).all()  # other seed


def test_weights_change_the_image_and_rerun_is_exact(indexed_demo, eager, user):
    first = _run(eager, services.generation_request, user, _params())
    other = _run(
        eager,
        services.generation_request,
        user,
        _params(weight_artist_style=1.5, weight_genre_style=-1.0),
    )
    assert first.job.status == other.job.status == JobStatus.SUCCEEDED
    assert np.abs(_pixels(first.image) - _pixels(other.image)).max() > 0

    rerun = _run(eager, services.generation_rerun, first, user)
    assert rerun.job.status == JobStatus.SUCCEEDED and rerun.rerun_of_id == first.pk
    assert (_pixels(rerun.image) == _pixels(first.image)).all()
    keep = ("loras", "retrieved", "seed", "steps", "sampler", "guidance", "base_model")
    assert {k: rerun.provenance[k] for k in keep} == {k: first.provenance[k] for k in keep}


def test_one_set_twice_trains_one_lora_with_the_summed_weight(indexed_demo, eager, user):
    # Only a style is named: both sets are "style" + content, the same artworks.
    generation = _run(
        eager, services.generation_request, user, _params(prompt="quiet hills, ukiyo-e")
    )
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    assert generation.lora_artist_style_id == generation.lora_genre_style_id
    assert LoraCacheEntry.objects.count() == 1
    assert [lo["weight"] for lo in generation.provenance["loras"]] == [pytest.approx(1.0)]


def test_training_resumes_from_its_checkpoint_after_a_crash(indexed_demo, user, gen_settings):
    gen_settings.LORA_STEPS = 8
    sets = retrieval_sets.retrieval_sets_build(PROMPT, k=3)
    training = lora_cache.training_config_current().to_dict()
    entry = lora_cache.lora_entry_for("artist_style", sets["sets"]["artist_style"], training)

    class WorkerKilled(BaseException):
        """Stands in for the process dying: not an Exception, nothing may swallow it."""

    def crash_at_step_5(done, total, stage=""):
        if done == 5:
            raise WorkerKilled

    first, second = (Job.objects.create(kind="generation") for _ in range(2))
    with pytest.raises(WorkerKilled):
        lora_train(entry, job_id=first.pk, report=crash_at_step_5)
    work = lora_cache.lora_dir() / "work" / entry.key
    assert (work / "checkpoint-3").is_dir() and not lora_cache.lora_path(entry).exists()

    resumed = lora_train(entry, job_id=second.pk)
    assert resumed.status == LoraStatus.READY
    assert resumed.train_info["resumed_from_step"] == 3 and resumed.train_info["steps"] == 8
    assert not work.exists()  # checkpoints are removed once the LoRA is saved


def test_cancel_during_training_keeps_a_checkpoint(indexed_demo, user, gen_settings):
    sets = retrieval_sets.retrieval_sets_build(PROMPT, k=3)
    training = lora_cache.training_config_current().to_dict()
    entry = lora_cache.lora_entry_for("genre_style", sets["sets"]["genre_style"], training)

    def cancel_at_step_4(done, total, stage=""):
        if done == 4:
            raise JobCancelled("cancelled by the user")

    first, second = (Job.objects.create(kind="generation") for _ in range(2))
    with pytest.raises(JobCancelled):
        lora_train(entry, job_id=first.pk, report=cancel_at_step_4)
    entry.refresh_from_db()
    assert entry.status == LoraStatus.PENDING
    assert (lora_cache.lora_dir() / "work" / entry.key / "checkpoint-4").is_dir()
    assert lora_train(entry, job_id=second.pk).train_info["resumed_from_step"] == 4


def test_failure_is_recorded_and_retry_runs_a_new_job(indexed_demo, eager, user, monkeypatch):
    from generation.ml.errors import ModelUnavailable

    def broken():
        raise ModelUnavailable(
            "Stable Diffusion base model",
            "/models/sd",
            "no such folder",
            setting="MYTHRAGEN_SD_MODEL",
        )

    real = rendering.renderer_get
    monkeypatch.setattr(rendering, "renderer_get", broken)
    generation = _run(eager, services.generation_request, user, _params())
    failed_job = generation.job
    assert failed_job.status == JobStatus.FAILED
    assert "MYTHRAGEN_SD_MODEL" in failed_job.error
    monkeypatch.setattr(rendering, "renderer_get", real)
    generation = _run(eager, services.generation_retry, generation, user)
    assert generation.job_id != failed_job.pk
    assert generation.job.status == JobStatus.SUCCEEDED, generation.job.error
    assert Job.objects.filter(params__generation_id=generation.pk).count() == 2
    with pytest.raises(services.GenerationStateError):
        services.generation_retry(generation, user)


def test_queued_limit_per_user_and_cancel(imported_demo, user, gen_settings):
    gen_settings.GEN_MAX_QUEUED = 1
    first = services.generation_request(user, _params())  # no worker: stays queued
    assert first.job.status == JobStatus.QUEUED
    with pytest.raises(services.GenerationLimitError, match="limit is 1"):
        services.generation_request(user, _params())
    services.generation_cancel(first)
    assert first.job.status == JobStatus.CANCELLED
    services.generation_request(user, _params())  # room again


def test_a_redelivered_or_superseded_task_does_nothing(imported_demo, user):
    generation = services.generation_request(user, _params())
    job_id = generation.job_id
    assert not services.generation_phase_begin(generation.pk, job_id, "render")  # not its phase
    assert not services.generation_phase_begin(generation.pk, job_id + 99, "retrieve")
    for _ in range(phases.MAX_PHASE_ATTEMPTS):
        assert services.generation_phase_begin(generation.pk, job_id, "retrieve")
    # One start too many: its worker died every time; the job fails with that reason.
    assert not services.generation_phase_begin(generation.pk, job_id, "retrieve")
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED and "attempts" in job.error


def _fake_entry(key: str, size: int, used_days_ago: int | None) -> LoraCacheEntry:
    entry = lora_entry_create(key, used_days_ago=used_days_ago, size_bytes=size)
    path = lora_cache.lora_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return entry


def test_eviction_keeps_the_budget_lru_first_and_spares_loras_in_use(db, gen_settings, user):
    old, mid, new, busy = (
        _fake_entry("a", 400, 9),
        _fake_entry("b", 400, 5),
        _fake_entry("c", 400, 1),
        _fake_entry("d", 400, 20),
    )
    job = Job.objects.create(kind="generation", status=JobStatus.RUNNING)
    generation_create(job=job, lora_artist_style=busy)
    report = services.lora_cache_evict(budget_bytes=900)
    assert report.before_bytes == 1600 and report.after_bytes == 800
    assert report.evicted == [old.key, mid.key] and report.kept_in_use == 1
    states = dict(LoraCacheEntry.objects.values_list("key", "status"))
    assert states[busy.key] == states[new.key] == LoraStatus.READY
    assert states[old.key] == LoraStatus.EVICTED and not lora_cache.lora_path(old).exists()
