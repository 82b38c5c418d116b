"""Writes to the catalog: the WikiArt import and genre-label assignment."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from PIL import Image

from catalog import wikiart
from catalog.models import (
    MACHINE_SOURCES,
    Artist,
    Artwork,
    Genre,
    GenreLabel,
    LabelSource,
    Style,
)
from catalog.selectors import labels_changed
from catalog.uploads import ImageRefused, image_check  # noqa: F401 - re-exported

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)

# Which label wins: a curator's over WikiArt's over a model's (the genre model and the VQA
# model rank alike); the latest wins within a rank.
LABEL_PRECEDENCE = (LabelSource.CURATOR, LabelSource.WIKIART, MACHINE_SOURCES)

_ARTWORK_FIELDS = (
    "title",
    "year",
    "artist_id",
    "style_id",
    "style_split",
    "genre_split",
    "artist_split",
    "is_synthetic",
)
# Fields a person may change (the admin): a re-import keeps a value a person changed.
PERSON_FIELDS = ("title", "year", "artist_id", "style_id")


@dataclass(frozen=True)
class KeptChange:
    """A field a person changed that a re-import left alone."""

    path: str
    field: str
    kept: object
    imported: object

    def __str__(self) -> str:
        return f"{self.path}: kept {self.field} {self.kept!r} (the import says {self.imported!r})"


@dataclass
class ImportReport:
    """What an import did, for the command's final report and for tests."""

    root: str
    synthetic: bool = False
    files_read: list[str] = field(default_factory=list)
    rows_read: int = 0
    artworks_in_layout: int = 0
    artworks_created: int = 0
    artworks_updated: int = 0
    artworks_unchanged: int = 0
    artists_created: int = 0
    styles: int = 0
    genres: int = 0
    labels_created: int = 0
    images_attached: int = 0
    images_failed: int = 0
    kept: list[KeptChange] = field(default_factory=list)
    errors: list[wikiart.Problem] = field(default_factory=list)
    warnings: list[wikiart.Problem] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> list[str]:
        return [
            f"Imported {self.root}" + (" (synthetic demo catalog)" if self.synthetic else ""),
            f"  files read: {len(self.files_read)}, rows read: {self.rows_read:,}",
            f"  artworks: {self.artworks_in_layout:,} in the layout; {self.artworks_created:,} "
            f"created, {self.artworks_updated:,} updated, {self.artworks_unchanged:,} unchanged",
            f"  artists created: {self.artists_created:,}; styles: {self.styles}; "
            f"genres: {self.genres}; genre labels created: {self.labels_created:,}",
            f"  images attached: {self.images_attached:,}; "
            f"unreadable images: {self.images_failed:,}",
            f"  kept {len(self.kept):,} field(s) a person changed"
            + (f" ({self._kept_by_field()})" if self.kept else ""),
            f"  skipped rows/files: {len(self.errors):,}; warnings: {len(self.warnings):,}",
            f"  time: {self.seconds:.1f} s",
        ]

    def _kept_by_field(self) -> str:
        counts: dict[str, int] = {}
        for change in self.kept:
            counts[change.field] = counts.get(change.field, 0) + 1
        return ", ".join(f"{name}: {n:,}" for name, n in sorted(counts.items()))


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def wikiart_import(
    root: Path | str,
    *,
    images_root: Path | str | None = None,
    batch_size: int = 2000,
    progress: Progress | None = None,
) -> ImportReport:
    """Import (or re-import) an ArtGAN WikiArt folder into the catalog.

    Idempotent: artworks are keyed by their WikiArt path, so a re-run creates nothing
    twice; changed metadata is updated, a changed WikiArt genre becomes a new label (a
    curator's label still wins), and images found since the last run are attached.
    Rows that cannot be read are reported with file and line and skipped. Each batch
    is its own transaction, so an interruption keeps every finished batch.
    Raises `wikiart.LayoutError` when the folder is unusable (nothing is written).
    """
    started = time.monotonic()
    layout = wikiart.read_layout(root)
    images_root = Path(images_root) if images_root else layout.root
    report = ImportReport(
        root=str(root),
        synthetic=layout.synthetic,
        files_read=layout.files_read,
        rows_read=layout.rows_read,
        errors=list(layout.errors),
        warnings=list(layout.warnings),
    )

    styles, genres = _vocabulary_upsert(layout)
    report.styles, report.genres = len(styles), len(genres)

    parsed: dict[str, wikiart.ParsedName] = {}
    for rel in layout.records:
        try:
            parsed[rel] = wikiart.parse_file_name(rel)
        except ValueError as exc:
            report.errors.append(wikiart.Problem("(file name)", None, str(exc)))
    report.artworks_in_layout = len(parsed)
    artists, report.artists_created = _artists_upsert(layout, parsed.values(), batch_size)

    paths = sorted(parsed)
    total = len(paths)
    existing = {
        row[0]: row[1:]
        for row in Artwork.objects.values_list("path", "id", *_ARTWORK_FIELDS, "imported")
    }
    latest_wikiart = _latest_wikiart_genres()
    done = 0
    for chunk in _batches(paths, batch_size):
        with transaction.atomic():
            created, updated, unchanged, labels = _artworks_write(
                chunk, layout, parsed, artists, styles, genres, existing, latest_wikiart, report
            )
            report.artworks_created += created
            report.artworks_updated += updated
            report.artworks_unchanged += unchanged
            report.labels_created += labels
            attached, failed = _images_attach(chunk, images_root, report)
            report.images_attached += attached
            report.images_failed += failed
        done += len(chunk)
        if progress:
            progress(done, total)
    report.seconds = time.monotonic() - started
    logger.debug("wikiart import finished: %s", "; ".join(report.summary()))
    return report


def _vocabulary_upsert(layout: wikiart.Layout) -> tuple[dict[str, int], dict[str, int]]:
    folder_of = {style: folder for folder, style in layout.style_folders.items()}
    with transaction.atomic():
        for idx, name in layout.styles:
            Style.objects.filter(class_index=idx).exclude(name=name).update(class_index=None)
            Style.objects.update_or_create(
                name=name, defaults={"class_index": idx, "folder": folder_of.get(name, name)}
            )
        for idx, name in layout.genres:
            Genre.objects.filter(class_index=idx).exclude(name=name).update(class_index=None)
            Genre.objects.update_or_create(name=name, defaults={"class_index": idx})
    labels_changed()  # queryset updates send no signals
    styles = dict(Style.objects.values_list("name", "id"))
    genres = dict(Genre.objects.values_list("name", "id"))
    return styles, genres


def _artists_upsert(layout, names: Iterable[wikiart.ParsedName], batch_size: int):
    by_class = {
        wikiart.artist_slug_from_class(n): (i, n.replace("_", " ")) for i, n in layout.artists
    }
    slugs = {p.artist_slug for p in names}
    existing = dict(Artist.objects.values_list("slug", "id"))
    new = []
    for slug in sorted(slugs - existing.keys()):
        idx, name = by_class.get(slug, (None, wikiart.artist_name_from_slug(slug)))
        new.append(Artist(slug=slug, name=name, class_index=idx))
    with transaction.atomic():
        Artist.objects.bulk_create(new, batch_size=batch_size)
        # Known artists that the class list names properly ("Vincent van Gogh").
        for slug, (idx, name) in by_class.items():
            if slug in existing:
                Artist.objects.filter(slug=slug).exclude(name=name, class_index=idx).update(
                    name=name, class_index=idx
                )
        # Names an earlier import derived without repairing the slug's mis-decoded letters
        # ("Arnold Bã¶cklin"); a name someone has changed since is left alone.
        for slug in (slugs & existing.keys()) - by_class.keys():
            if slug.isascii():
                continue
            naive = wikiart.artist_name_from_slug(slug, repair=False)
            repaired = wikiart.artist_name_from_slug(slug)
            if naive != repaired:
                Artist.objects.filter(slug=slug, name=naive).update(name=repaired)
        labels_changed()  # bulk writes send no signals
    return dict(Artist.objects.values_list("slug", "id")), len(new)


def _latest_wikiart_genres() -> dict[int, int | None]:
    latest: dict[int, int | None] = {}
    rows = GenreLabel.objects.filter(source=LabelSource.WIKIART).order_by("created_at", "id")
    for artwork_id, genre_id in rows.values_list("artwork_id", "genre_id"):
        latest[artwork_id] = genre_id
    return latest


def _imported_ids(imported: dict, artists: dict[str, int], styles: dict[str, int]) -> dict:
    """An artwork's `imported` record as values of PERSON_FIELDS (slug and name to ids);
    fields it does not hold (artworks imported before it was kept) are left out."""
    out = {}
    if "title" in imported:
        out["title"] = imported["title"]
    if "year" in imported:
        out["year"] = imported["year"]
    if "artist" in imported:
        out["artist_id"] = artists.get(imported["artist"], -1)
    if "style" in imported:
        out["style_id"] = styles.get(imported["style"], -1)
    return out


def _artworks_write(
    chunk, layout, parsed, artists, styles, genres, existing, latest_wikiart, report=None
):
    """Create or update one batch of artworks. A field of PERSON_FIELDS whose value differs
    from what the last import wrote (`Artwork.imported`) was changed by a person: it keeps
    that value, and `report.kept` says so."""
    created_objs, updates, unchanged, changed = [], [], 0, 0
    wanted_genre: dict[str, int | None] = {}
    for rel in chunk:
        rec, name = layout.records[rel], parsed[rel]
        values = (
            name.title[:300],
            name.year,
            artists[name.artist_slug],
            styles[rec.style],
            rec.style_split,
            rec.genre_split,
            rec.artist_split,
            layout.synthetic,
        )
        imported = {
            "title": values[0],
            "year": values[1],
            "artist": name.artist_slug,
            "style": rec.style,
        }
        wanted_genre[rel] = genres[rec.genre] if rec.genre else None
        if rel not in existing:
            gid = wanted_genre[rel]
            created_objs.append(
                Artwork(
                    path=rel,
                    **dict(zip(_ARTWORK_FIELDS, values, strict=True)),
                    genre_id=gid,
                    genre_source=LabelSource.WIKIART if gid else "",
                    caption=name.title,
                    caption_source="title",
                    imported=imported,
                )
            )
            continue
        current = dict(zip(_ARTWORK_FIELDS, existing[rel][1:-1], strict=True))
        wanted = dict(zip(_ARTWORK_FIELDS, values, strict=True))
        before = _imported_ids(existing[rel][-1] or {}, artists, styles)
        for name_ in PERSON_FIELDS:
            changed_by_person = name_ in before and current[name_] != before[name_]
            if changed_by_person and current[name_] != wanted[name_]:
                if report is not None:
                    report.kept.append(
                        KeptChange(rel, name_.removesuffix("_id"), current[name_], wanted[name_])
                    )
                wanted[name_] = current[name_]
        if wanted != current or (existing[rel][-1] or {}) != imported:
            # Also when only the record of what was imported is new (artworks imported
            # before it was kept); those count as unchanged.
            updates.append(Artwork(id=existing[rel][0], path=rel, imported=imported, **wanted))
            existing[rel] = (existing[rel][0], *wanted.values(), imported)
            changed += wanted != current
        unchanged += wanted == current
    Artwork.objects.bulk_create(created_objs)
    if updates:
        Artwork.objects.bulk_update(updates, [*_ARTWORK_FIELDS, "imported"])
    for obj in created_objs:
        existing[obj.path] = (obj.id, *(getattr(obj, f) for f in _ARTWORK_FIELDS), obj.imported)

    labels, refresh = [], []
    new_paths = {o.path for o in created_objs}
    for rel in chunk:
        gid = wanted_genre[rel]
        artwork_id = existing[rel][0]
        if gid is None or latest_wikiart.get(artwork_id, -1) == gid:
            continue
        labels.append(
            GenreLabel(
                artwork_id=artwork_id, genre_id=gid, source=LabelSource.WIKIART, model_id="wikiart"
            )
        )
        latest_wikiart[artwork_id] = gid
        if rel not in new_paths:
            refresh.append(artwork_id)
    GenreLabel.objects.bulk_create(labels)
    if refresh:
        artwork_genre_refresh(refresh)
    return len(created_objs), changed, unchanged, len(labels)


def _images_attach(chunk, images_root: Path, report: ImportReport) -> tuple[int, int]:
    """Attach image files that exist under `images_root` to artworks that lack one.

    CSV paths are already relative and free of `..` (`wikiart.check_relative_path`); a
    symlink in the folder could still lead out of it, so every file must resolve inside
    the root, or it is refused and reported.
    """
    root = images_root.resolve()
    found, refused = [], 0
    for rel in chunk:
        candidate = images_root / rel
        if not candidate.is_file():
            continue
        if not candidate.resolve().is_relative_to(root):
            report.errors.append(
                wikiart.Problem(rel, None, "image not attached: it resolves outside the root")
            )
            refused += 1
            continue
        found.append(rel)
    if not found:
        return 0, refused
    missing_image = dict(Artwork.objects.filter(path__in=found, image="").values_list("path", "id"))
    attached, failed, objs = 0, refused, []
    for rel in found:
        if rel not in missing_image:
            continue
        try:
            stored = artwork_image_store(rel, (images_root / rel).read_bytes())
        except ImageRefused as exc:
            failed += 1
            report.errors.append(wikiart.Problem(rel, None, f"image not attached: {exc}"))
            continue
        objs.append(Artwork(id=missing_image[rel], **stored))
        attached += 1
    Artwork.objects.bulk_update(objs, ["image", "thumbnail", "image_width", "image_height"])
    return attached, failed


def artwork_image_store(rel: str, data: bytes) -> dict:
    """Store an artwork's image and its thumbnail; return the model fields to set."""
    image = image_check(data)
    thumb = image.copy()
    size = settings.CATALOG_THUMBNAIL_SIZE
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    stem = rel.rsplit(".", 1)[0]
    image_name = default_storage.save(f"artworks/{rel}", ContentFile(data))
    thumb_name = default_storage.save(f"thumbs/{stem}.jpg", ContentFile(buf.getvalue()))
    return {
        "image": image_name,
        "thumbnail": thumb_name,
        "image_width": image.width,
        "image_height": image.height,
    }


def artwork_genre_refresh(artwork_ids: Iterable[int]) -> None:
    """Recompute the cached current genre of artworks from their label history."""
    ids = list(artwork_ids)
    current: dict[int, GenreLabel] = {}
    rank = {
        source: i
        for i, sources in enumerate(LABEL_PRECEDENCE)
        for source in (sources if isinstance(sources, tuple) else (sources,))
    }
    labels = GenreLabel.objects.filter(artwork_id__in=ids, retracted_at__isnull=True).order_by(
        "created_at", "id"
    )
    for label in labels:
        best = current.get(label.artwork_id)
        if best is None or rank[label.source] <= rank[best.source]:
            current[label.artwork_id] = label
    for artwork_id in ids:
        label = current.get(artwork_id)
        Artwork.objects.filter(id=artwork_id).update(
            genre_id=label.genre_id if label else None,
            genre_source=label.source if label else "",
            genre_confidence=label.confidence if label else None,
            label_version=F("label_version") + 1,
        )


def genre_label_add(
    artwork: Artwork,
    genre: Genre | None,
    *,
    source: str,
    confidence: float | None = None,
    model_id: str = "",
    user=None,
    note: str = "",
    scores: dict | None = None,
    batch_id=None,
) -> GenreLabel:
    """Record a new genre label for an artwork and refresh its current genre."""
    with transaction.atomic():
        label = GenreLabel.objects.create(
            artwork=artwork,
            genre=genre,
            source=source,
            confidence=confidence,
            model_id=model_id,
            user=user,
            note=note,
            scores=scores,
            batch_id=batch_id,
        )
        artwork_genre_refresh([artwork.id])
    artwork.refresh_from_db()
    return label
