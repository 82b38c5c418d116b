"""Writes for labelling: captions, the VQA model, curator corrections, bulk operations.

The layer between the ORM and `labelling.ml`'s captioner and VQA model (the genre model's
training, labelling runs and evaluation are in `labelling.genre_services`). Every curator
write checks the artwork's `label_version` so two curators cannot silently overwrite each
other, and makes the new genre count in search at once
(`retrieval.services.artwork_labels_changed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import MACHINE_SOURCES, Artwork, Genre, GenreLabel, LabelSource
from catalog.selectors import artwork_image_load
from catalog.services import artwork_genre_refresh, genre_label_add
from jobs.heartbeat import job_current, job_heartbeat
from labelling import selectors
from labelling.models import BulkOperation
from retrieval.services import artwork_labels_changed, ml_device

logger = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]


class LabellingUnavailable(RuntimeError):
    """The captioning/VQA model cannot be loaded (the message names the variable)."""


class GenreConflict(Exception):
    """Someone else changed the artwork's genre since the curator loaded it."""

    def __init__(self, artwork: Artwork, expected: int) -> None:
        label = (
            artwork.genre_labels.select_related("user", "genre")
            .filter(retracted_at__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        who = (
            label.user.get_username()
            if label and label.user
            else (label.get_source_display() if label else "someone")
        )
        genre = artwork.genre.display_name if artwork.genre else "no genre"
        super().__init__(
            f"Conflict: {who} changed this artwork's genre to {genre} while you were looking "
            f"at it (version {expected} -> {artwork.label_version}). Reload and decide again."
        )
        self.current_version = artwork.label_version
        self.current_genre = artwork.genre.name if artwork.genre else None


# --- Captions -----------------------------------------------------------------------------


@dataclass
class CaptionReport:
    model_id: str
    is_tiny: bool
    captioned: int = 0
    without_image: int = 0
    seconds: float = 0.0


def _model_load(get, model_id: str):
    """Load a labelling model through its `ml/` registry getter (both roles use the BLIP-2
    named by MYTHRAGEN_VQA_MODEL); an unavailable model is a `LabellingUnavailable`."""
    from labelling.ml.errors import ModelUnavailable

    try:
        return get(
            model_id,
            device=ml_device(),
            precision=settings.LABEL_PRECISION,
            setting="MYTHRAGEN_VQA_MODEL",
        ).load()
    except ModelUnavailable as exc:
        raise LabellingUnavailable(str(exc)) from exc


def captioner_get():
    from labelling.ml.captioner import get_captioner

    return _model_load(get_captioner, settings.CAPTION_MODEL)


def captions_generate(
    *,
    overwrite: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> CaptionReport:
    """Caption artworks that have an image (and no model caption yet, unless overwrite).

    Artworks without an image keep their title as caption (source "title"). A changed
    caption makes the artwork's retrieval vectors stale by itself (the caption text is
    part of what was embedded).
    """
    started = time.monotonic()
    with job_heartbeat(job_current(), f"loading model {settings.CAPTION_MODEL}"):
        captioner = captioner_get()
    report = CaptionReport(model_id=settings.CAPTION_MODEL, is_tiny=captioner.is_stand_in)
    source = "tiny-model" if captioner.is_stand_in else "model"
    todo = Artwork.objects.exclude(image="").order_by("id")
    if not overwrite:
        todo = todo.exclude(caption_source__in=["model", "tiny-model", "curator"])
    ids = list(
        todo.values_list("id", flat=True)[:limit] if limit else todo.values_list("id", flat=True)
    )
    report.without_image = Artwork.objects.filter(image="").count()
    batch_size = batch_size or settings.LABEL_BATCH
    for start in range(0, len(ids), batch_size):
        chunk = list(Artwork.objects.filter(id__in=ids[start : start + batch_size]).order_by("id"))
        captions = captioner.caption([artwork_image_load(a.image.name) for a in chunk])
        with transaction.atomic():
            for art, text in zip(chunk, captions, strict=True):
                art.caption = text.strip() or art.title
                art.caption_source = source if text.strip() else "title"
                art.caption_model = settings.CAPTION_MODEL if text.strip() else ""
            Artwork.objects.bulk_update(chunk, ["caption", "caption_source", "caption_model"])
        report.captioned += len(chunk)
        if progress:
            progress(min(start + batch_size, len(ids)), len(ids), "captioning")
    report.seconds = time.monotonic() - started
    return report


# --- The VQA model (genre labelling itself: labelling.genre_services) ----------------------


def vqa_get():
    from labelling.ml.vqa import get_vqa

    return _model_load(get_vqa, settings.VQA_MODEL)


def candidate_genres(names: Iterable[str] | None = None) -> list[Genre]:
    """The genre set the VQA model chooses from: given names, the setting, or all."""
    wanted = list(names or settings.VQA_GENRES)
    genres = list(Genre.objects.order_by("name"))
    if not wanted:
        return genres
    by_name = {g.name: g for g in genres}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"Unknown genre(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


# --- Curator review ------------------------------------------------------------------------


def _locked(artwork_id: int, expected_version: int | None) -> Artwork:
    # No select_related: after waiting for the lock, PostgreSQL re-reads the locked row but
    # not rows joined to it, so a joined genre would be the one from before the wait (and a
    # conflict message would name the wrong genre). The genre is read after the lock.
    artwork = Artwork.objects.select_for_update().get(pk=artwork_id)
    if expected_version is not None and artwork.label_version != expected_version:
        raise GenreConflict(artwork, expected_version)
    return artwork


def genre_label_correct(
    artwork_id: int, genre: Genre | None, *, user, expected_version: int | None, note: str = ""
) -> GenreLabel:
    """A curator sets an artwork's genre (None clears it). Raises GenreConflict if the
    artwork changed since the curator saw `expected_version`."""
    with transaction.atomic():
        artwork = _locked(artwork_id, expected_version)
        label = genre_label_add(artwork, genre, source=LabelSource.CURATOR, user=user, note=note)
        artwork_labels_changed([artwork.pk])
    return label


def model_suggestion(artwork: Artwork) -> GenreLabel | None:
    """The latest model label (genre model or VQA: the model's suggestion), if any."""
    return (
        artwork.genre_labels.filter(source__in=MACHINE_SOURCES, retracted_at__isnull=True)
        .select_related("genre")
        .order_by("-created_at", "-id")
        .first()
    )


def genre_suggestion_accept(artwork_id: int, *, user, expected_version: int | None) -> GenreLabel:
    """A curator confirms the current genre (the model's suggestion, or WikiArt's label)."""
    with transaction.atomic():
        artwork = _locked(artwork_id, expected_version)
        suggestion = model_suggestion(artwork)
        machine = artwork.genre_source in MACHINE_SOURCES
        genre = suggestion.genre if suggestion and machine else artwork.genre
        if genre is None:
            raise ValueError("There is no suggestion to accept for this artwork.")
        label = genre_label_add(
            artwork, genre, source=LabelSource.CURATOR, user=user, note="accepted suggestion"
        )
        artwork_labels_changed([artwork.pk])
    return label


def genre_label_revert(
    artwork_id: int, label_id: int, *, user, expected_version: int | None
) -> GenreLabel:
    """Make an earlier label's genre current again, as a new curator label."""
    with transaction.atomic():
        artwork = _locked(artwork_id, expected_version)
        old = GenreLabel.objects.select_related("genre").get(pk=label_id, artwork=artwork)
        label = genre_label_add(
            artwork,
            old.genre,
            source=LabelSource.CURATOR,
            user=user,
            note=f"revert to label #{old.pk} ({old.get_source_display()})",
        )
        artwork_labels_changed([artwork.pk])
    return label


@dataclass
class BulkChange:
    artwork: Artwork
    old: Genre | None
    new: Genre | None

    @property
    def changes_genre(self) -> bool:
        """False for a label confirmed as it is (only its source becomes curator)."""
        return (self.old.pk if self.old else None) != (self.new.pk if self.new else None)


# The most artworks one bulk operation may cover (a preview lists each of them). A
# selection past it is refused with that reason, on the page and in the API alike, never
# cut short: a silently truncated preview would apply to an arbitrary part of a filter.
BULK_MAX = 5000


class BulkTooLarge(ValueError):
    """More artworks match than one bulk operation may cover."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} artworks match; narrow the filters")
        self.limit = limit


def bulk_plan_select(
    action: str,
    genre: Genre | None = None,
    *,
    artwork_ids: Iterable[int] | None = None,
    filters: dict | None = None,
) -> list[BulkChange]:
    """Plan a bulk operation over the artworks given by id, else over the review
    candidates matching `filters` (`labelling.filters.ReviewFilter`): the one place the
    page and the API choose artworks and apply `BULK_MAX`.

    Raises `selectors.ReviewFilterError` for bad filters and `BulkTooLarge` when more
    than `BULK_MAX` artworks are chosen.
    """
    if artwork_ids:
        artworks = Artwork.objects.filter(pk__in=list(artwork_ids)).order_by("id")
    else:
        artworks = selectors.review_candidates(filters)
    chosen = list(artworks.select_related("genre")[: BULK_MAX + 1])
    if len(chosen) > BULK_MAX:
        raise BulkTooLarge(BULK_MAX)
    return bulk_plan(chosen, action, genre)


def bulk_plan_counts(changes: Iterable[BulkChange]) -> dict[str, int]:
    """How many planned changes set another genre, and how many confirm the genre an
    artwork has (a WikiArt or model label that becomes a curator's): the preview says
    both, so accepting labels that stay as they are is not announced as change."""
    changes = list(changes)
    genre = sum(c.changes_genre for c in changes)
    return {"total": len(changes), "genre": genre, "confirm": len(changes) - genre}


def bulk_plan(
    artworks: Iterable[Artwork], action: str, genre: Genre | None = None
) -> list[BulkChange]:
    """What a bulk operation would change (the preview): artworks whose genre would differ
    or that would become curator-confirmed."""
    changes = []
    for art in artworks:
        if action == BulkOperation.Action.RELABEL:
            new = genre
        elif action == BulkOperation.Action.ACCEPT:
            machine = art.genre_source in MACHINE_SOURCES
            suggestion = model_suggestion(art) if machine else None
            new = suggestion.genre if suggestion else art.genre
            if new is None:
                continue
        else:
            raise ValueError(f"unknown bulk action {action!r}")
        if art.genre_source == LabelSource.CURATOR and art.genre_id == (new.pk if new else None):
            continue  # already exactly this, confirmed by a curator
        changes.append(BulkChange(art, art.genre, new))
    return changes


def bulk_apply(
    artwork_ids: list[int],
    action: str,
    *,
    user,
    genre: Genre | None = None,
    params: dict | None = None,
    expected_versions: dict[int, int] | None = None,
) -> BulkOperation:
    """Apply a bulk relabel/accept as one operation that can be undone.

    Every artwork's label version is checked as a single edit checks it: with
    `expected_versions` (artwork id -> the version the curator's preview showed), an
    artwork whose version moved since (someone corrected it meanwhile), or that the
    preview did not show, is left alone and listed in `op.conflicts` with who changed it
    and its genre now; the others are applied. Without it (an API client that skipped the
    preview), the plan is made and applied under the same row locks.
    """
    with transaction.atomic():
        artworks = list(
            Artwork.objects.select_for_update(of=("self",))
            .select_related("genre")
            .filter(pk__in=artwork_ids)
            .order_by("id")
        )
        conflicts = []
        if expected_versions is not None:
            unchanged = []
            for art in artworks:
                seen = expected_versions.get(art.pk)
                if seen is not None and art.label_version == seen:
                    unchanged.append(art)
                    continue
                conflict = GenreConflict(art, seen if seen is not None else -1)
                conflicts.append(
                    {
                        "artwork_id": art.pk,
                        "title": art.title,
                        "expected_version": seen,
                        "current_version": conflict.current_version,
                        "current_genre": conflict.current_genre,
                        "detail": str(conflict)
                        if seen is not None
                        else "Not in the preview you applied; preview again.",
                    }
                )
            artworks = unchanged
        changes = bulk_plan(artworks, action, genre)
        op = BulkOperation.objects.create(
            action=action,
            genre=genre,
            user=user,
            count=len(changes),
            params=params or {},
            conflicts=conflicts,
        )
        GenreLabel.objects.bulk_create(
            [
                GenreLabel(
                    artwork=c.artwork,
                    genre=c.new,
                    source=LabelSource.CURATOR,
                    user=user,
                    batch_id=op.pk,
                    note=f"bulk {action}",
                )
                for c in changes
            ]
        )
        ids = [c.artwork.pk for c in changes]
        artwork_genre_refresh(ids)
        artwork_labels_changed(ids)
    return op


def bulk_undo(op: BulkOperation, *, user) -> int:
    """Retract an operation's labels: each artwork's genre is what it was before."""
    with transaction.atomic():
        op = BulkOperation.objects.select_for_update().get(pk=op.pk)
        if op.undone_at:
            raise ValueError("This operation was already undone.")
        labels = GenreLabel.objects.filter(batch_id=op.pk, retracted_at__isnull=True)
        ids = list(labels.values_list("artwork_id", flat=True))
        labels.update(retracted_at=timezone.now())
        artwork_genre_refresh(ids)
        artwork_labels_changed(ids)
        op.undone_at, op.undone_by = timezone.now(), user
        op.save(update_fields=["undone_at", "undone_by"])
    return len(ids)


def labelling_request(kind: str, *, user=None, **params):
    """Queue a labelling run (label_genres or caption_artworks) as a job; one of each kind
    at a time (the database enforces it): a request while one is active gets that one."""
    from jobs.services import job_create_exclusive, job_enqueue
    from labelling import tasks

    task = {
        tasks.LABEL_GENRES: tasks.label_genres_task,
        tasks.CAPTION_ARTWORKS: tasks.caption_artworks_task,
    }[kind]
    with transaction.atomic():
        job, created = job_create_exclusive(kind, params=params, user=user)
        if created:
            job_enqueue(job, task, **params)
    return job
