"""The WikiArt catalog: artists, styles, genres, artworks and their genre labels."""

from django.conf import settings
from django.db import models


class Artist(models.Model):
    """A painter, identified by the slug WikiArt uses in file names (`claude-monet`)."""

    slug = models.CharField(max_length=200, unique=True)
    name = models.CharField(max_length=200, db_index=True)
    # Index in ArtGAN's 23-artist class list, where the artist is one of them.
    class_index = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WikiArtClass(models.Model):
    """A class of one of WikiArt's class lists (a style or a genre), by its class name
    ("Art_Nouveau"); shown with spaces ("Art Nouveau")."""

    name = models.CharField(max_length=100, unique=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name.replace("_", " ")


class Style(WikiArtClass):
    """An art movement (27 in WikiArt), named as in ArtGAN's class list."""

    # The image folder, which differs from the class name once (Art_Nouveau_Modern).
    folder = models.CharField(max_length=100, blank=True)
    class_index = models.PositiveSmallIntegerField(null=True, blank=True, unique=True)


class Genre(WikiArtClass):
    """A subject category (10 in WikiArt: portrait, landscape, ...)."""

    class_index = models.PositiveSmallIntegerField(null=True, blank=True, unique=True)


class LabelSource(models.TextChoices):
    WIKIART = "wikiart", "WikiArt"
    VQA = "vqa", "VQA model"
    # The genre model: the metadata model, fused with the VQA model where it saw the image.
    MODEL = "model", "Genre model"
    CURATOR = "curator", "Curator"


# Labels a model wrote (its suggestions), as opposed to WikiArt's and curators' word.
MACHINE_SOURCES = (LabelSource.MODEL, LabelSource.VQA)


class HistoryProtected(Exception):
    """A write that would erase or rewrite genre-label history (it is append-only)."""


class Split(models.TextChoices):
    TRAIN = "train", "train"
    VAL = "val", "val"


class Artwork(models.Model):
    """One painting, identified by its WikiArt path `<Style folder>/<artist>_<title>.jpg`.

    `genre`, `genre_source` and `genre_confidence` cache the current label, which is
    always derivable from the artwork's `GenreLabel` history (see
    `catalog.services.artwork_genre_refresh`); only that service writes them.
    """

    path = models.CharField(max_length=400, unique=True)
    title = models.CharField(max_length=300, db_index=True)
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    artist = models.ForeignKey(Artist, on_delete=models.PROTECT, related_name="artworks")
    style = models.ForeignKey(Style, on_delete=models.PROTECT, related_name="artworks")
    # What the last import wrote for the fields a person may change (title, year, artist
    # slug, style name): a field whose value differs from it was changed by someone since,
    # and a re-import keeps it (catalog.services.wikiart_import reports what it kept).
    imported = models.JSONField(default=dict, blank=True)
    genre = models.ForeignKey(
        Genre, on_delete=models.PROTECT, related_name="artworks", null=True, blank=True
    )
    genre_source = models.CharField(max_length=16, choices=LabelSource.choices, blank=True)
    genre_confidence = models.FloatField(null=True, blank=True)
    # Bumped by every label change: curators' edits carry it to detect conflicts.
    label_version = models.PositiveIntegerField(default=0)

    image = models.ImageField(upload_to="artworks/", blank=True, max_length=500)
    thumbnail = models.ImageField(upload_to="thumbs/", blank=True, max_length=500)
    image_width = models.PositiveIntegerField(null=True, blank=True)
    image_height = models.PositiveIntegerField(null=True, blank=True)

    caption = models.TextField(blank=True)
    # "title" (the title stands in), "model" (a captioning model), "tiny-model", "curator".
    caption_source = models.CharField(max_length=32, blank=True)
    caption_model = models.CharField(max_length=500, blank=True)

    style_split = models.CharField(max_length=8, choices=Split.choices, blank=True)
    genre_split = models.CharField(max_length=8, choices=Split.choices, blank=True)
    artist_split = models.CharField(max_length=8, choices=Split.choices, blank=True)
    # Drawn by `make_demo_catalog`, not a real painting: the UI says so.
    is_synthetic = models.BooleanField(default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        permissions = [("curate_genre", "Can review and correct genre labels")]
        indexes = [
            models.Index(fields=["style", "genre"]),
            models.Index(fields=["artist", "genre"]),
            models.Index(fields=["genre_source"]),
            # Every page asks whether any synthetic artwork exists (the demo banner): on
            # the real catalog, where none does, that was a full scan of 81k rows.
            models.Index(
                fields=["is_synthetic"],
                condition=models.Q(is_synthetic=True),
                name="catalog_artwork_synthetic",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.artist})"


class GenreLabelQuerySet(models.QuerySet):
    """Refuses what would erase history: deleting labels, or rewriting any field but
    `retracted_at` (the one later write, by bulk undo)."""

    def delete(self):
        raise HistoryProtected(
            "Genre labels are never deleted: the history is append-only (retract instead)."
        )

    delete.queryset_only = True

    def update(self, **kwargs):
        _check_label_fields(kwargs)
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        _check_label_fields(fields)
        return super().bulk_update(objs, fields, batch_size=batch_size)


LABEL_MUTABLE_FIELDS = frozenset({"retracted_at"})


def _check_label_fields(fields) -> None:
    changed = set(fields) - LABEL_MUTABLE_FIELDS
    if changed:
        raise HistoryProtected(
            f"Genre labels are append-only: {', '.join(sorted(changed))} cannot be changed "
            "(add a new label instead)."
        )


class GenreLabel(models.Model):
    """One assignment of a genre to an artwork, never deleted; only ever retracted.

    The history of an artwork's genre is its labels in time order: WikiArt's
    ground truth at import, a model's guess with its confidence, a curator's correction
    with the user. Precedence for the current label: the latest curator label, else the
    latest WikiArt label, else the latest model label (genre model or VQA); retracted
    labels (an undone bulk operation) do not count but stay visible.

    A model's label records what made it: `sources` (["metadata"], ["metadata", "vqa"]
    for a fusion, or ["vqa"] on the paper's VQA-only path), `model_versions` (each
    source's model version, and the fusion's), `scores` (the full probability vector it
    chose from), `source_scores` (each source's own vector) and `confidence` (the chosen
    genre's probability). Nothing deletes a label (the queryset, the instance and the
    artwork's foreign key refuse) and only `retracted_at` is ever written again.
    """

    artwork = models.ForeignKey(Artwork, on_delete=models.PROTECT, related_name="genre_labels")
    # Null means "no genre" (a curator may clear a wrong label).
    genre = models.ForeignKey(Genre, on_delete=models.PROTECT, null=True, blank=True)
    source = models.CharField(max_length=16, choices=LabelSource.choices)
    confidence = models.FloatField(null=True, blank=True)
    model_id = models.CharField(max_length=300, blank=True)
    # Who made it: a user with labels cannot be deleted (deactivate them instead).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    note = models.CharField(max_length=500, blank=True)
    # The probability of every candidate genre the label chose from (model labels).
    scores = models.JSONField(null=True, blank=True)
    sources = models.JSONField(default=list, blank=True)
    model_versions = models.JSONField(default=dict, blank=True)
    source_scores = models.JSONField(null=True, blank=True)
    # Labels written together by one bulk operation share a batch id (for undo).
    batch_id = models.UUIDField(null=True, blank=True, db_index=True)
    # An undone label stays in the history, retracted: it no longer counts.
    retracted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = GenreLabelQuerySet.as_manager()

    class Meta:
        ordering = ["artwork_id", "created_at", "id"]
        indexes = [models.Index(fields=["artwork", "source", "created_at"])]

    def __str__(self) -> str:
        return f"{self.artwork_id}: {self.genre or '(none)'} [{self.source}]"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            fields = kwargs.get("update_fields")
            _check_label_fields(
                fields if fields is not None else [f.name for f in self._meta.concrete_fields]
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise HistoryProtected(
            "Genre labels are never deleted: the history is append-only (retract instead)."
        )

    @property
    def is_undone(self) -> bool:
        return self.retracted_at is not None
