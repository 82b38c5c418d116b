"""The world the role cases run in: actors, a small catalog with an index, generations,
LoRAs, media files; and `snapshot`, everything a role could change."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from catalog import services as catalog_services
from catalog.models import Artist, Artwork, Genre, GenreLabel, LabelSource, Style
from generation.models import Generation, LoraCacheEntry, LoraKind, LoraStatus
from generation.services import GENERATION_JOB
from jobs.models import Job, JobStatus
from labelling import services as labelling_services
from labelling.models import BulkOperation
from retrieval.models import EmbeddingSpace
from tests.factories import generation_create
from tests.roles.matrix import PASSWORD


def _user(name: str, *, curator: bool = False, superuser: bool = False):
    users = get_user_model().objects
    create = users.create_superuser if superuser else users.create_user
    user = create(name, f"{name}@example.com", PASSWORD)
    if curator:
        user.groups.add(Group.objects.get(name="curators"))
    return user


ACTORS = {
    "user": lambda: _user("pat"),
    "curator": lambda: _user("cora", curator=True),
    "admin": lambda: _user("ada", superuser=True),
}

RETRIEVAL_SETS = {"sets": {"artist_style": {"artworks": []}, "genre_style": {"artworks": []}}}


def _generation(owner, state: str) -> Generation:
    done = state == JobStatus.SUCCEEDED
    job = Job.objects.create(kind=GENERATION_JOB, user=owner, status=state)
    return generation_create(
        user=owner,
        job=job,
        prompt=f"{owner.username} {state} request",
        phase=Generation.Phase.DONE if done else Generation.Phase.RETRIEVE,
        retrieval=RETRIEVAL_SETS if done else {},
        image="generations/done.png" if done else "",
    )


PNG_BYTES = b"\x89PNG\r\n\x1a\n not really a png"


def _image_file(generation: Generation, suffix: str = "") -> str:
    """Write a result file named as the service names them (`<id>-<seed>...png`)."""
    from django.conf import settings

    name = f"generations/{generation.pk}-{generation.seed}{suffix}.png"
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG_BYTES)
    return name


@dataclass(frozen=True)
class Catalog:
    """A tiny catalog with a label history, searchable (built once per module).

    Artworks: `a` (WikiArt landscape: correct / accept), `b` (VQA portrait, low confidence:
    bulk relabel), `c` (WikiArt cityscape, then a curator's portrait: revert), `d`
    (WikiArt landscape, then bulk-relabelled to portrait by another curator: undo).
    """

    art: dict[str, Artwork]
    c_wikiart: GenreLabel
    op_id: object

    @classmethod
    def make(cls) -> Catalog:
        genre = {
            n: Genre.objects.create(name=n, class_index=i)
            for i, n in enumerate(["cityscape", "landscape", "portrait"])
        }
        artist = Artist.objects.create(slug="ada-lane", name="Ada Lane")
        style = Style.objects.create(name="Cubism", folder="Cubism", class_index=0)
        titles = {
            "a": "Harbour at Dawn",
            "b": "Lady in Blue",
            "c": "Bridge at Night",
            "d": "Quiet Hills",
        }
        art = {
            key: Artwork.objects.create(
                path=f"Cubism/ada-lane_{title.lower().replace(' ', '-')}.jpg",
                title=title,
                image=f"artworks/{key}.jpg",  # generation retrieves only artworks with images
                artist=artist,
                style=style,
            )
            for key, title in titles.items()
        }
        cleo = _user("cleo", curator=True)  # another curator, author of the earlier changes
        add = catalog_services.genre_label_add
        add(art["a"], genre["landscape"], source=LabelSource.WIKIART)
        add(art["b"], genre["portrait"], source=LabelSource.VQA, confidence=0.35)
        c_wikiart = add(art["c"], genre["cityscape"], source=LabelSource.WIKIART)
        add(art["c"], genre["portrait"], source=LabelSource.CURATOR, user=cleo)
        add(art["d"], genre["landscape"], source=LabelSource.WIKIART)
        op = labelling_services.bulk_apply(
            [art["d"].pk], "relabel", user=cleo, genre=genre["portrait"]
        )
        return cls(art=art, c_wikiart=c_wikiart, op_id=op.pk)


class World:
    """The module's catalog seen by one role: the acting user and, made on first use (so
    before the snapshot), another user's generations, the actor's own, a cached LoRA."""

    def __init__(self, role: str, settings, catalog: Catalog):
        self.role = role
        self.settings = settings
        self.art = catalog.art
        self.c_wikiart = catalog.c_wikiart
        self.op = BulkOperation.objects.get(pk=catalog.op_id)
        self.actor = ACTORS[role]() if role in ACTORS else None

    def artwork(self, key: str) -> Artwork:
        return Artwork.objects.get(pk=self.art[key].pk)

    @cached_property
    def olga(self):
        """Another plain user, owner of the `others` generations."""
        return _user("olga")

    @cached_property
    def others(self) -> dict[str, Generation]:
        return {
            "queued": _generation(self.olga, JobStatus.QUEUED),
            "failed": _generation(self.olga, JobStatus.FAILED),
            "finished": _generation(self.olga, JobStatus.SUCCEEDED),
        }

    @cached_property
    def own(self) -> dict[str, Generation]:
        return {
            "queued": _generation(self.actor, JobStatus.QUEUED),
            "failed": _generation(self.actor, JobStatus.FAILED),
            "finished": _generation(self.actor, JobStatus.SUCCEEDED),
        }

    @cached_property
    def flagged(self) -> dict[str, Generation]:
        """Finished results whose image the safety checker flagged (olga's, the actor's)."""
        made = {"others": _generation(self.olga, JobStatus.SUCCEEDED)}
        if self.actor:
            made["own"] = _generation(self.actor, JobStatus.SUCCEEDED)
        for whose, generation in made.items():
            generation.image = _image_file(generation, f"-flagged-{whose}-5f1c0a")
            generation.image_flagged = True
            generation.save(update_fields=["image", "image_flagged"])
        return made

    @cached_property
    def images(self) -> dict[str, Generation]:
        """Generations with an image file on disk: olga's finished (public) and failed
        (a file its dead worker left), the actor's failed one."""
        made = {
            "finished": _generation(self.olga, JobStatus.SUCCEEDED),
            "others-failed": _generation(self.olga, JobStatus.FAILED),
        }
        if self.actor:
            made["own-failed"] = _generation(self.actor, JobStatus.FAILED)
        for generation in made.values():
            generation.image = _image_file(generation)
            generation.save(update_fields=["image"])
        return made

    def all_generations(self) -> list[Generation]:
        """Touch both owners' generations (before the snapshot) and return them."""
        own = list(self.own.values()) if self.actor else []
        return [*self.others.values(), *own]

    @cached_property
    def lora(self) -> LoraCacheEntry:
        """A READY cache entry of olga's finished (public) result, with its file and an
        up-to-date diffusers export on disk."""
        return self._lora("e", self.others["finished"])

    @cached_property
    def private_lora(self) -> LoraCacheEntry:
        """A READY entry used only by olga's queued request (it names what she asked for)."""
        return self._lora("d", self.others["queued"])

    def _lora(self, digit: str, used_by: Generation) -> LoraCacheEntry:
        entry = LoraCacheEntry.objects.create(
            key=digit * 64,
            kind=LoraKind.ARTIST_STYLE,
            label="Ada Lane + Cubism",
            base_model="tiny-sd15",
            base_model_fingerprint="tiny",
            code_version="test",
            status=LoraStatus.READY,
            size_bytes=2 * 1024 * 1024,  # over the 1 MB budget the tests set
            is_tiny=True,
        )
        root = Path(self.settings.LORA_DIR)
        source = root / "loras" / f"{entry.key}.safetensors"
        export = root / "exports" / f"{entry.key}-diffusers.safetensors"
        for path in (source, export):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"lora weights")
        stamp = source.stat().st_mtime
        os.utime(export, (stamp, stamp))
        used_by.lora_artist_style = entry
        used_by.save(update_fields=["lora_artist_style"])
        return entry

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace.objects.get()  # the search index's


def snapshot(settings) -> dict:
    """Everything a role could change: users, groups, labels, artworks' current genres,
    bulk operations, jobs, generations, the LoRA cache and its files, embedding spaces."""
    users = get_user_model().objects
    lora_root = Path(settings.LORA_DIR)
    return {
        "users": sorted(users.values_list("username", "password", "is_staff", "is_superuser")),
        "groups": sorted(users.model.groups.through.objects.values_list("user_id", "group_id")),
        "labels": sorted(GenreLabel.objects.values_list("id", "genre_id", "source", "user_id")),
        "retracted": sorted(
            GenreLabel.objects.exclude(retracted_at=None).values_list("id", flat=True)
        ),
        "artworks": sorted(
            Artwork.objects.values_list("id", "genre_id", "genre_source", "label_version")
        ),
        "bulk": sorted(
            (str(pk), undone is None)
            for pk, undone in BulkOperation.objects.values_list("id", "undone_at")
        ),
        "jobs": sorted(
            Job.objects.values_list("id", "kind", "status", "cancel_requested", "user_id")
        ),
        "generations": sorted(Generation.objects.values_list("id", "job_id", "user_id", "phase")),
        "loras": sorted(LoraCacheEntry.objects.values_list("key", "status", "size_bytes")),
        "lora_files": sorted(str(p) for p in lora_root.rglob("*") if p.is_file()),
        "spaces": EmbeddingSpace.objects.count(),
    }
