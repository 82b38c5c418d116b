"""Writes for the genre model: training it and labelling genre-less artworks (its
evaluation, which reads only, is `labelling.genre_evaluation`).

The only layer between the ORM and `labelling.ml.metadata` / `fusion` / `genre_model`:
it reads artworks into `Metadata` records and images, hands them to the model, and
writes what comes back (`GenreLabel`s with their sources, versions and probabilities,
`GenreAssessment`s for the review queue, `GenreModelVersion` rows).

Which data is which (never mixed):
- training: artworks of WikiArt's genre *train* split that have a WikiArt label; their
  label is the current genre when WikiArt or a curator set it (a curator's correction
  of a WikiArt label counts). A held-out part of them calibrates the model.
- evaluation: the genre *val* split, against WikiArt's label; never trained or
  calibrated on.
- labelling: artworks with no genre (the 16,452 of the real catalog), except where a
  curator said "no genre".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from catalog.models import Artwork, Genre, GenreLabel, LabelSource
from catalog.selectors import artwork_image_load
from catalog.services import artwork_genre_refresh
from jobs.heartbeat import job_current, job_heartbeat
from labelling.models import GenreAssessment, GenreModelVersion
from labelling.services import LabellingUnavailable, candidate_genres, vqa_get
from retrieval.services import artwork_labels_changed

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]

LABELLERS = ("auto", "metadata", "vqa")
# Artworks with an image whose VQA probabilities the fusion is fitted on, at most (the
# VQA model costs seconds per image on a CPU); drawn from the training artworks.
FUSION_SAMPLE = 2000
# Artworks labelled per transaction by the genre model.
LABEL_CHUNK = 1000


class GenreModelMissing(LabellingUnavailable):
    """No genre model is trained yet (and none may be trained here and now)."""


_FIELDS = ("id", "title", "year", "artist__slug", "style__name")


def _record(row):
    from labelling.ml.metadata import Metadata

    _id, title, year, artist, style = row[:5]
    return Metadata(title=title or "", artist=artist, style=style, year=year)


def _wikiart_labelled():
    return Exists(GenreLabel.objects.filter(artwork=OuterRef("pk"), source=LabelSource.WIKIART))


def training_set() -> tuple[list[int], list, list[str]]:
    """(artwork ids, Metadata records, genre names) of the training data, by id."""
    rows = (
        Artwork.objects.filter(
            _wikiart_labelled(),
            genre_split="train",
            genre__isnull=False,
            genre_source__in=[LabelSource.WIKIART, LabelSource.CURATOR],
        )
        .order_by("id")
        .values_list(*_FIELDS, "genre__name")
    )
    rows = list(rows.iterator(chunk_size=5000))
    return [r[0] for r in rows], [_record(r) for r in rows], [r[5] for r in rows]


def _genre_names() -> list[str]:
    return list(Genre.objects.order_by("name").values_list("name", flat=True))


# --------------------------------------------------------------------------- the model


def genre_model_current(*, train_if_missing: bool = False, progress: Progress | None = None):
    """The published genre model (loaded once per process), training one first when none
    is published and `train_if_missing` (a fresh catalog: `label_genres` trains it)."""
    from labelling.ml.errors import ModelUnavailable
    from labelling.ml.genre_model import current_folder, get_genre_model

    folder = current_folder(settings.GENRE_MODEL_DIR)
    if folder is None:
        if not train_if_missing:
            raise GenreModelMissing(
                f"No genre model is trained yet (MYTHRAGEN_MODELS_DIR/genre-model="
                f"{settings.GENRE_MODEL_DIR}): run `python manage.py train_genre_model`."
            )
        genre_model_train(progress=progress)
        folder = current_folder(settings.GENRE_MODEL_DIR)
    model = get_genre_model(folder, setting="MYTHRAGEN_MODELS_DIR")
    try:
        return model.load()
    except ModelUnavailable as exc:
        raise GenreModelMissing(str(exc)) from exc


def genre_model_train(
    *, user=None, progress: Progress | None = None, seed: int = 0
) -> GenreModelVersion:
    """Train, calibrate and publish a genre model on the training data; fit its fusion
    with the VQA model when one is configured and training artworks have images; store
    every artwork's held-out assessment for the review queue. Returns the version row."""
    from labelling.ml import genre_model
    from labelling.ml.metadata_training import data_digest, train_metadata_model

    started = time.monotonic()
    say = progress or (lambda done, total, stage="": None)
    ids, records, labels = training_set()
    genres = _genre_names()
    digest = data_digest(records, labels, ids)
    version = genre_model.version_name(digest)

    def ml_progress(stage: str, fraction: float) -> None:
        say(int(70 * fraction), 100, f"training the genre model: {stage}")

    try:
        result = train_metadata_model(
            records, labels, genres, seed=seed, progress=ml_progress, meta={"version": version}
        )
    except ValueError as exc:  # too little data, unknown labels
        raise LabellingUnavailable(f"Cannot train the genre model: {exc}") from exc
    fusion, skipped = _fusion_fit(ids, labels, genres, result.held_out, say)
    meta = {
        **result.report,
        "version": version,
        "data_digest": digest,
        "genres": genres,
        "fusion": fusion.to_json() if fusion is not None else None,
        "fusion_skipped": skipped,
    }
    say(80, 100, "publishing the genre model")
    genre_model.publish(settings.GENRE_MODEL_DIR, version, result.model, fusion, meta)
    say(85, 100, "assessing the catalog")
    assessed = _assessments_write(version, ids, result.held_out, genres, result.model)
    row = GenreModelVersion.objects.create(
        version=version,
        data_digest=digest,
        trained=result.report["trained"],
        calibration=result.report["calibration"],
        metrics={k: v for k, v in result.report.items() if k not in ("trained", "calibration")},
        fusion=meta["fusion"] or {"skipped": skipped},
        seconds=round(time.monotonic() - started, 1),
        user=user,
    )
    say(100, 100, f"trained {version}; {assessed} artworks assessed")
    return row


def _fusion_fit(ids, labels, genres, held_out, say):
    """(The VQA + metadata fusion, fitted on training artworks with an image, their
    metadata probabilities held out; or None, and why not)."""
    from labelling.ml.fusion import MIN_FIT, fit_fusion

    if settings.GENRE_LABELLER == "metadata" or not settings.VQA_MODEL:
        return None, "no VQA model is used (GENRE_LABELLER=metadata)"
    position = {artwork_id: i for i, artwork_id in enumerate(ids)}
    # No `pk__in` over tens of thousands of ids (SQLite caps the parameters of a query).
    with_image = [
        (artwork_id, image)
        for artwork_id, image in Artwork.objects.exclude(image="")
        .order_by("id")
        .values_list("id", "image")
        .iterator(chunk_size=5000)
        if artwork_id in position
    ]
    if len(with_image) < MIN_FIT:
        return None, (
            f"{len(with_image)} training artworks have an image; the fusion needs {MIN_FIT}"
        )
    rng = np.random.default_rng(0)
    if len(with_image) > FUSION_SAMPLE:
        picked = np.sort(rng.choice(len(with_image), FUSION_SAMPLE, replace=False))
        with_image = [with_image[i] for i in picked]
    try:
        with job_heartbeat(job_current(), f"loading model {settings.VQA_MODEL}"):
            vqa = vqa_get()
    except LabellingUnavailable as exc:  # the metadata model alone still labels everything
        return None, f"the VQA model could not be loaded: {exc}"
    vqa_probs = []
    batch = settings.LABEL_BATCH
    for start in range(0, len(with_image), batch):
        chunk = with_image[start : start + batch]
        vqa_probs.append(vqa.score([artwork_image_load(name) for _i, name in chunk], genres))
        say(70 + int(10 * (start + len(chunk)) / len(with_image)), 100, "fitting the fusion")
    rows = [position[i] for i, _name in with_image]
    index = {g: i for i, g in enumerate(genres)}
    fusion = fit_fusion(
        {"metadata": held_out[rows], "vqa": np.concatenate(vqa_probs)},
        np.asarray([index[labels[r]] for r in rows]),
        genres,
    )
    fusion.report.update(vqa_model=settings.VQA_MODEL, vqa_is_stand_in=vqa.is_stand_in)
    return fusion, ""


def _assessments_write(version, ids, held_out, genres, model) -> int:
    """Every artwork's assessment: held out for the training artworks, the model's
    prediction for the rest (none of which it was trained on)."""
    rows = {i: held_out[n] for n, i in enumerate(ids)}
    others = [
        r
        for r in Artwork.objects.order_by("id").values_list(*_FIELDS).iterator(chunk_size=5000)
        if r[0] not in rows
    ]
    if others:
        probs = model.predict_proba([_record(r) for r in others])
        rows.update({r[0]: p for r, p in zip(others, probs, strict=True)})
    trained = set(ids)
    objs = [
        GenreAssessment(
            artwork_id=artwork_id,
            model_version=version,
            scores={g: round(float(p), 5) for g, p in zip(genres, probs, strict=True)},
            held_out=True,
        )
        for artwork_id, probs in rows.items()
    ]
    with transaction.atomic():
        GenreAssessment.objects.all().delete()
        GenreAssessment.objects.bulk_create(objs, batch_size=2000)
    logger.info("genre model %s: %d assessments (%d trained on)", version, len(objs), len(trained))
    return len(objs)


def genre_model_train_request(user=None):
    """Queue a training run as a job (one at a time); returns the job."""
    from jobs.services import job_create_exclusive, job_enqueue
    from labelling import tasks

    with transaction.atomic():
        job, created = job_create_exclusive(tasks.TRAIN_GENRE_MODEL, user=user)
        if created:
            job_enqueue(job, tasks.train_genre_model_task)
    return job


# --------------------------------------------------------------------------- labelling


@dataclass
class LabelReport:
    model_id: str
    is_tiny: bool
    genres: list[str]
    labeller: str = "auto"
    labelled: int = 0
    fused: int = 0
    without_image: int = 0
    remaining: int = 0
    by_genre: dict[str, int] = field(default_factory=dict)
    trained: str = ""  # the version trained by this run (none was published)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def genres_label(
    *,
    limit: int | None = None,
    batch_size: int | None = None,
    genres: Iterable[str] | None = None,
    progress: Progress | None = None,
    labeller: str | None = None,
) -> LabelReport:
    """Label every artwork that has no genre, in batches that commit as they finish (an
    interrupted run resumes where it stopped: labelled artworks have a genre).

    GENRE_LABELLER (or `labeller`): "auto" labels with the genre model, trained
    first if none is published: the metadata model, fused with the VQA model for
    artworks with an image when a fusion was fitted for MYTHRAGEN_VQA_MODEL; "metadata"
    never loads the VQA model; "vqa" is the paper's zero-shot VQA labelling (artworks with
    an image only). Every label records its sources, their versions, the full probability
    vector (and each source's) and its confidence. A curator's label always wins over
    these (catalog.services.LABEL_PRECEDENCE); an artwork a curator left without a genre
    is not labelled.
    """
    labeller = (labeller or settings.GENRE_LABELLER).lower()
    if labeller not in LABELLERS:
        raise ValueError(f"labeller must be one of {', '.join(LABELLERS)}, not {labeller!r}")
    if labeller == "vqa":
        return _vqa_label(limit=limit, batch_size=batch_size, genres=genres, progress=progress)
    started = time.monotonic()
    say = progress or (lambda done, total, stage="": None)
    candidates = candidate_genres(genres)
    if not candidates:
        raise ValueError("The catalog has no genres to choose from.")
    trained = ""
    if _current_folder() is None:
        trained = genre_model_train(progress=say).version
    model = genre_model_current()
    names = [g.name for g in candidates]
    report = LabelReport(
        model_id=f"genre-model:{model.version}",
        is_tiny=False,
        genres=names,
        labeller=labeller,
        trained=trained,
    )
    todo = (
        Artwork.objects.filter(genre__isnull=True)
        .exclude(genre_source=LabelSource.CURATOR)  # a curator said: no genre
        .order_by("id")
    )
    ids = list(todo.values_list("id", flat=True))
    if limit:
        ids = ids[:limit]
    wanted = set(ids)
    has_image = {i for i in todo.exclude(image="").values_list("id", flat=True) if i in wanted}
    report.without_image = len(ids) - len(has_image)
    fusion, vqa = None, None
    if labeller == "auto" and has_image:
        fusion = model.fusion_for(settings.VQA_MODEL)
        if fusion is None:
            report.notes.append(
                f"no fusion was fitted for the VQA model {settings.VQA_MODEL}: artworks with "
                "an image get the metadata model's label (retrain: train_genre_model)"
            )
        else:
            with job_heartbeat(job_current(), f"loading model {settings.VQA_MODEL}"):
                vqa = vqa_get()
            report.is_tiny = vqa.is_stand_in
    model_names = model.genres
    columns = [model_names.index(n) for n in names if n in model_names]
    if len(columns) != len(names):
        missing = [n for n in names if n not in model_names]
        raise LabellingUnavailable(
            f"The genre model {model.version} does not know {', '.join(missing)}: retrain it "
            "(python manage.py train_genre_model)."
        )
    genre_of = {g.name: g for g in candidates}
    chunk_size = batch_size or LABEL_CHUNK
    say(0, len(ids), "labelling genres")
    done_ids: list[int] = []
    for start in range(0, len(ids), chunk_size):
        chunk = list(
            todo.filter(pk__in=ids[start : start + chunk_size]).values_list(*_FIELDS, "image")
        )
        if not chunk:
            continue
        meta = model.predict([_record(r) for r in chunk])[:, columns]
        meta = meta / meta.sum(axis=1, keepdims=True)
        vqa_rows = {}
        if vqa is not None:
            pictured = [(n, r) for n, r in enumerate(chunk) if r[5]]
            for s in range(0, len(pictured), settings.LABEL_BATCH):
                part = pictured[s : s + settings.LABEL_BATCH]
                probs = vqa.score([artwork_image_load(r[5]) for _n, r in part], names)
                vqa_rows.update({n: p for (n, _r), p in zip(part, probs, strict=True)})
        labels = []
        for n, row in enumerate(chunk):
            label = _model_label(row[0], names, meta[n], vqa_rows.get(n), fusion, model, genre_of)
            labels.append(label)
            report.by_genre[label.genre.name] = report.by_genre.get(label.genre.name, 0) + 1
        with transaction.atomic():
            GenreLabel.objects.bulk_create(labels)
            chunk_ids = [r[0] for r in chunk]
            artwork_genre_refresh(chunk_ids)
        done_ids += chunk_ids
        report.labelled += len(chunk)
        report.fused += len(vqa_rows)
        say(min(start + chunk_size, len(ids)), len(ids), "labelling genres")
    # Search follows: few changes are live at once, many request a rebuild. Staleness is
    # retrieval's own business: a vector's hash covers the artwork's labels, so a run cut
    # short before this line still leaves its artworks to the next embed_catalog.
    if done_ids:
        artwork_labels_changed(done_ids)
    report.remaining = todo.count()
    report.seconds = time.monotonic() - started
    return report


def _model_label(artwork_id, names, meta_row, vqa_row, fusion, model, genre_of) -> GenreLabel:
    """One genre-model label: the fused distribution where the VQA model saw the image,
    else the metadata model's, with each source's vector and version."""
    version = model.version
    source_scores = {"metadata": _as_scores(names, meta_row)}
    versions = {"metadata": version}
    sources = ["metadata"]
    probs = meta_row
    if vqa_row is not None and fusion is not None:
        rows = {"metadata": meta_row, "vqa": vqa_row}
        fused = fusion.combine(
            {s: _expand(rows[s], names, fusion.genres)[None, :] for s in fusion.sources}
        )[0]
        probs = np.asarray([fused[list(fusion.genres).index(n)] for n in names])
        probs = probs / probs.sum()
        source_scores["vqa"] = _as_scores(names, vqa_row)
        versions.update(vqa=settings.VQA_MODEL, fusion=version)
        sources.append("vqa")
    best = int(np.argmax(probs))
    return GenreLabel(
        artwork_id=artwork_id,
        genre=genre_of[names[best]],
        source=LabelSource.MODEL,
        confidence=float(probs[best]),
        model_id=f"genre-model:{version}",
        scores=_as_scores(names, probs),
        sources=sources,
        model_versions=versions,
        source_scores=source_scores,
        note="fused with a stand-in VQA model (random weights)"
        if len(sources) > 1 and fusion.report.get("vqa_is_stand_in")
        else "",
    )


def _expand(row: np.ndarray, names: list[str], genres) -> np.ndarray:
    """A probability row over `names` as a row over `genres` (absent genres: ~0)."""
    out = np.full(len(genres), 1e-6)
    for n, name in enumerate(names):
        if name in genres:
            out[list(genres).index(name)] = row[n]
    return out / out.sum()


def _as_scores(names: list[str], row) -> dict[str, float]:
    return {n: round(float(p), 6) for n, p in zip(names, row, strict=True)}


def _current_folder():
    from labelling.ml.genre_model import current_folder

    return current_folder(settings.GENRE_MODEL_DIR)


def _vqa_label(*, limit, batch_size, genres, progress) -> LabelReport:
    """The paper's path: zero-shot VQA labels for artworks with an image and no genre."""
    started = time.monotonic()
    candidates = candidate_genres(genres)
    if not candidates:
        raise ValueError("The catalog has no genres to choose from.")
    with job_heartbeat(job_current(), f"loading model {settings.VQA_MODEL}"):
        vqa = vqa_get()
    names = [g.name for g in candidates]
    report = LabelReport(
        model_id=settings.VQA_MODEL, is_tiny=vqa.is_stand_in, genres=names, labeller="vqa"
    )
    unlabelled = Artwork.objects.filter(genre__isnull=True).exclude(
        genre_source=LabelSource.CURATOR
    )
    report.without_image = unlabelled.filter(image="").count()
    ids = list(unlabelled.exclude(image="").order_by("id").values_list("id", flat=True))
    if limit:
        ids = ids[:limit]
    note = "stand-in model (random weights)" if vqa.is_stand_in else ""
    batch_size = batch_size or settings.LABEL_BATCH
    done_ids: list[int] = []
    for start in range(0, len(ids), batch_size):
        chunk = list(unlabelled.filter(id__in=ids[start : start + batch_size]).order_by("id"))
        predictions = vqa.predict([artwork_image_load(a.image.name) for a in chunk], names)
        labels = []
        for art, (name, confidence, probs) in zip(chunk, predictions, strict=True):
            scores = _as_scores(names, probs)
            labels.append(
                GenreLabel(
                    artwork=art,
                    genre=candidates[names.index(name)],
                    source=LabelSource.VQA,
                    confidence=float(confidence),
                    model_id=settings.VQA_MODEL,
                    note=note,
                    scores=scores,
                    sources=["vqa"],
                    model_versions={"vqa": settings.VQA_MODEL},
                    source_scores={"vqa": scores},
                )
            )
            report.by_genre[name] = report.by_genre.get(name, 0) + 1
        with transaction.atomic():
            GenreLabel.objects.bulk_create(labels)
            artwork_genre_refresh([a.pk for a in chunk])
        done_ids += [a.pk for a in chunk]
        report.labelled += len(chunk)
        if progress:
            progress(min(start + batch_size, len(ids)), len(ids), "labelling genres")
    if done_ids:
        artwork_labels_changed(done_ids)
    report.remaining = unlabelled.exclude(image="").count()
    report.seconds = time.monotonic() - started
    return report
