"""Retrieval: embedding spaces, per-label and per-artwork embeddings, the pgvector mirror.

Vectors are stored as float32 bytes so SQLite and PostgreSQL hold the same data; the
fused vector of an artwork is assembled from its caption/image vectors and the current
label vectors (see `retrieval.vectors.fused_matrix`), so a label correction needs no
re-embedding, only re-assembly. On PostgreSQL the fused vectors are mirrored into a
pgvector column (`ArtworkVectorMirror`) with an HNSW index for browsing.
"""

import uuid

from django.db import models
from pgvector.django import VectorField

from catalog.models import Artwork


class EmbeddingSpace(models.Model):
    """One embedder (kind + model id) with its fusion weights: vectors are comparable
    only within a space. `key` hashes everything that changes the vectors."""

    key = models.CharField(max_length=64, unique=True)
    embedder = models.CharField(max_length=20)
    model_id = models.CharField(max_length=500)
    dim = models.PositiveIntegerField(help_text="per-slot dimension; fused is 4x")
    has_image = models.BooleanField(default=False)
    is_tiny = models.BooleanField(default=False)
    weights = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.embedder}:{self.model_id} ({self.dim}-d)"

    @property
    def fused_dim(self) -> int:
        return 4 * self.dim


class LabelKind(models.TextChoices):
    GENRE = "genre", "genre"
    ARTIST = "artist", "artist"
    STYLE = "style", "style"


class LabelEmbedding(models.Model):
    """The embedding of one genre, artist or style name, computed once per space."""

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="labels")
    kind = models.CharField(max_length=10, choices=LabelKind.choices)
    label_id = models.BigIntegerField()
    text = models.CharField(max_length=300)
    vector = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "kind", "label_id"], name="uniq_label_emb")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


class ArtworkEmbedding(models.Model):
    """An artwork's caption (and image) vectors in one space, with what they came from.

    `caption_text` and `image_name` say what was embedded; when the artwork's caption or
    image differs, the vector is stale. `fused_hash` fingerprints every input of the fused
    vector (labels included); an empty hash marks it for re-assembly.
    """

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="artworks")
    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="embeddings")
    caption_text = models.TextField()
    caption_vector = models.BinaryField()
    image_name = models.CharField(max_length=500, blank=True)
    image_vector = models.BinaryField(null=True, blank=True)
    fused_hash = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "artwork"], name="uniq_artwork_emb")
        ]

    def __str__(self) -> str:
        return f"artwork {self.artwork_id} in space {self.space_id}"


class ArtworkVectorMirror(models.Model):
    """The fused vector in a pgvector column (PostgreSQL only; see config.routers)."""

    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE)
    artwork = models.ForeignKey(Artwork, on_delete=models.CASCADE, related_name="+")
    fused_hash = models.CharField(max_length=40)
    embedding = VectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "artwork"], name="uniq_artwork_mirror")
        ]

    def __str__(self) -> str:
        return f"mirror of artwork {self.artwork_id} in space {self.space_id}"


class CatalogIdentity(models.Model):
    """Which catalog this database holds: a random id made once, by a migration (or on first
    use after the tables were emptied, e.g. `flush`). Every FAISS index version and the
    pgvector mirror record the id they were built from, so a process refuses to serve an
    index of another catalog (two databases sharing one index folder) instead of returning
    artworks of that catalog. One row."""

    catalog_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "catalog identity"

    def __str__(self) -> str:
        return str(self.catalog_id)


class MirrorBuild(models.Model):
    """What the pgvector mirror of a space was last completed from (PostgreSQL only): the
    catalog id and its row count, written by the index rebuild once every row is mirrored.
    Similar-artwork queries refuse a mirror of another catalog, or none."""

    space = models.OneToOneField(EmbeddingSpace, on_delete=models.CASCADE, related_name="mirror")
    catalog_id = models.UUIDField()
    rows = models.PositiveIntegerField()
    built_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"mirror of space {self.space_id}: {self.rows} rows of catalog {self.catalog_id}"
