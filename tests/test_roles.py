# The role table (MATRIX) is wider than 100 columns; wrapping it would make it unreadable.
# ruff: noqa: E501
"""Who may do what: every page, form post and API endpoint against every role.

Roles (issue #6, "Hardening"):

- anonymous: browses the catalog and the gallery, searches, reads the public API;
- user: signed in; requests generations and sees and controls only their own requests
  and jobs;
- curator: a user in the `curators` group (permission `catalog.curate_genre`); also
  reviews and changes genre labels;
- admin: staff and superuser (what `make run` creates); also re-indexes, manages the
  LoRA cache and users in the Django admin, and sees and controls every request and job.

`MATRIX` below is the decision, one row per case: the URL it exercises (its name in the
URLconf; `admin:*` for the Django admin, `media` for uploaded files), the HTTP method and
the outcome for each role. `test_every_url_has_a_role_decision` fails when a URL pattern
(or, for the API, an HTTP method of one) has no row, so a new endpoint cannot ship
without a decision here. Each case is run for each role with Django's test client:

- `ok`: really allowed: the expected 2xx (or the page's success redirect) and the effect
  (a generation created, a label changed, a job queued, ...). A read changes nothing.
- `denied` (API): 401/403 (403 once signed in); `login` (page): a redirect to the
  sign-in page; `admin-login`: the Django admin's redirect to its sign-in page; `403`:
  signed in without the permission; `404`: another user's private object; `405`: a
  method no role has. In every one of these the database (and the LoRA files) are
  unchanged.
- `-`: does not apply (an anonymous visitor owns nothing).

Another user's unfinished, failed or cancelled generation, and another user's job, are a
404, not a 403: ids are sequential, and a 403 would confirm that request N exists and
belongs to someone else (how busy the service is, who is generating). It is what
`generation_visible` and the jobs API's queryset already do: objects outside the
caller's visible set do not exist for them. Finished generations are the public gallery
(shown to anonymous visitors too), so their pages and API detail are open to all; only
their owner (or an admin) may cancel, retry or re-run. An image the safety checker
flagged is the exception: its page and API answer are open, but the image and its URL
reach only its owner and admins (others read "flagged by the safety checker"), and the
gallery leaves it out for everyone else. The image files follow the same rule (`media`
rows `gen-image-*`): generation images are served through a permission check, never as
plain media. A LoRA names the artist and style someone asked for, so the LoRA list, its
entries and downloads show others only LoRAs of finished, public results.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.db import transaction
from django.templatetags.static import static
from django.test import Client, override_settings
from django.urls import URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from catalog import services as catalog_services
from catalog.models import Artist, Artwork, Genre, GenreLabel, LabelSource, Style
from config.media import media_view
from generation.models import Generation, LoraCacheEntry, LoraKind, LoraStatus
from generation.services import GENERATION_JOB
from jobs.models import Job, JobStatus
from labelling import services as labelling_services
from labelling.models import BulkOperation
from retrieval import api as retrieval_api
from retrieval.models import EmbeddingSpace
from retrieval.services import index_rebuild

ROLES = ("anonymous", "user", "curator", "admin")
ADMIN = "admin:*"  # every URL of the Django admin (staff only, then model permissions)
PASSWORD = "pw-correct-horse-7"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
NEW_PASSWORD = "pw-battery-staple-9"

# Expected outcome of each case for each role. Routes are URL names (namespace:name).
MATRIX = """
case                          route                     method  anonymous    user         curator      admin
# --- pages: browse and search (everyone) ------------------------------------------------
home                          catalog:artwork-list      GET     ok           ok           ok           ok
artwork-page                  catalog:artwork-detail    GET     ok           ok           ok           ok
search-page                   retrieval:search          GET     ok           ok           ok           ok
search-form                   retrieval:search          POST    ok           ok           ok           ok
similar-fragment              retrieval:similar         GET     ok           ok           ok           ok
media-file                    media                     GET     ok           ok           ok           ok
gen-image-finished            media                     GET     ok           ok           ok           ok
gen-image-others-failed       media                     GET     404          404          404          ok
gen-image-own-failed          media                     GET     -            ok           ok           ok
gen-image-others-flagged      media                     GET     404          404          404          ok
gen-image-own-flagged         media                     GET     -            ok           ok           ok
gen-image-by-dotted-path      media                     GET     404          404          404          ok
gallery-page                  generation:gallery        GET     ok           ok           ok           ok
favicon                       favicon                   GET     ok           ok           ok           ok
# --- pages: generation (signed in; own requests only, admins all) ------------------------
generate-page                 generation:generate       GET     login        ok           ok           ok
generate-form                 generation:generate       POST    login        ok           ok           ok
gen-page-others-queued        generation:detail         GET     404          404          404          ok
gen-page-others-failed        generation:detail         GET     404          404          404          ok
gen-page-own                  generation:detail         GET     -            ok           ok           ok
gen-page-finished             generation:detail         GET     ok           ok           ok           ok
gen-page-others-flagged       generation:detail         GET     ok           ok           ok           ok
gen-page-own-flagged          generation:detail         GET     -            ok           ok           ok
gallery-flagged               generation:gallery        GET     ok           ok           ok           ok
gen-result-others-queued      generation:result         GET     404          404          404          ok
gen-result-finished           generation:result         GET     ok           ok           ok           ok
gen-cancel-form-others        generation:cancel         POST    login        404          404          ok
gen-cancel-form-own           generation:cancel         POST    -            ok           ok           ok
gen-retry-form-others         generation:retry          POST    login        404          404          ok
gen-retry-form-own            generation:retry          POST    -            ok           ok           ok
gen-rerun-form-others         generation:rerun          POST    login        404          404          ok
gen-rerun-form-own            generation:rerun          POST    -            ok           ok           ok
lora-download-page            generation:lora-download  GET     login        ok           ok           ok
lora-download-page-private    generation:lora-download  GET     login        404          404          ok
# --- pages: review (curators) -------------------------------------------------------------
review-page                   labelling:review          GET     login        403          ok           ok
review-item-fragment          labelling:item            GET     login        403          ok           ok
bulk-page                     labelling:bulk            GET     login        403          ok           ok
bulk-form                     labelling:bulk            POST    login        403          ok           ok
bulk-undo-form                labelling:bulk-undo       POST    login        403          ok           ok
revert-form                   labelling:revert          POST    login        403          ok           ok
# --- pages: accounts (sign-in is throttled per address: tests/accounts) -------------------
login-page                    login                     GET     ok           ok           ok           ok
login-form                    login                     POST    ok           ok           ok           ok
logout-form                   logout                    POST    ok           ok           ok           ok
logout-by-link                logout                    GET     405          405          405          405
password-change-page          password_change           GET     login        ok           ok           ok
password-change-form          password_change           POST    login        ok           ok           ok
password-change-done          password_change_done      GET     login        ok           ok           ok
password-reset-page           password_reset            GET     ok           ok           ok           ok
password-reset-form           password_reset            POST    ok           ok           ok           ok
password-reset-done           password_reset_done       GET     ok           ok           ok           ok
password-reset-confirm        password_reset_confirm    POST    ok           ok           ok           ok
password-reset-complete       password_reset_complete   GET     ok           ok           ok           ok
# --- the Django admin (admins: users, re-index, LoRA cache) -------------------------------
admin-index                   admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-user-add                admin:*                   POST    admin-login  admin-login  admin-login  ok
admin-make-curator            admin:*                   POST    admin-login  admin-login  admin-login  ok
admin-rebuild-index           admin:*                   POST    admin-login  admin-login  admin-login  ok
admin-lora-evict              admin:*                   POST    admin-login  admin-login  admin-login  ok
admin-lora-evict-to-budget    admin:*                   POST    admin-login  admin-login  admin-login  ok
admin-retrain-genre-model     admin:*                   POST    admin-login  admin-login  admin-login  ok
admin-list:auth.user          admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:auth.group         admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:catalog.artist     admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:catalog.style      admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:catalog.genre      admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:catalog.artwork    admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:catalog.genrelabel admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:retrieval.embeddingspace admin:*             GET     admin-login  admin-login  admin-login  ok
admin-list:generation.loracacheentry admin:*            GET     admin-login  admin-login  admin-login  ok
admin-list:generation.generation admin:*                GET     admin-login  admin-login  admin-login  ok
admin-list:jobs.job           admin:*                   GET     admin-login  admin-login  admin-login  ok
admin-list:labelling.genremodelversion admin:*          GET     admin-login  admin-login  admin-login  ok
admin-list:authtoken.tokenproxy admin:*                 GET     admin-login  admin-login  admin-login  ok
# --- API: tokens (any account gets its own; revoking needs it) ----------------------------
api-token                     api-token                 POST    ok           ok           ok           ok
api-token-revoke              api-token                 DELETE  denied       ok           ok           ok
# --- API: catalog (read-only for everyone) ------------------------------------------------
api-root                      api-root                  GET     ok           ok           ok           ok
api-schema                    schema                    GET     ok           ok           ok           ok
api-docs                      api-docs                  GET     ok           ok           ok           ok
api-artworks                  artwork-list              GET     ok           ok           ok           ok
api-artwork-create            artwork-list              POST    denied       405          405          405
api-artwork                   artwork-detail            GET     ok           ok           ok           ok
api-artwork-delete            artwork-detail            DELETE  denied       405          405          405
api-artwork-labels            artwork-labels            GET     ok           ok           ok           ok
api-artists                   artist-list               GET     ok           ok           ok           ok
api-artist                    artist-detail             GET     ok           ok           ok           ok
api-styles                    style-list                GET     ok           ok           ok           ok
api-style                     style-detail              GET     ok           ok           ok           ok
api-genres                    genre-list                GET     ok           ok           ok           ok
api-genre-item                genre-detail              GET     ok           ok           ok           ok
# --- API: retrieval (search for everyone, rebuild for admins) -----------------------------
api-search                    api-search                GET     ok           ok           ok           ok
api-search-post               api-search                POST    ok           ok           ok           ok
api-similar                   api-similar               GET     ok           ok           ok           ok
api-index-status              api-index                 GET     ok           ok           ok           ok
api-index-rebuild             api-index                 POST    denied       denied       denied       ok
# --- API: labelling (curators) ------------------------------------------------------------
api-review-queue              api-review-queue          GET     denied       denied       ok           ok
api-bulk-preview              api-review-bulk           POST    denied       denied       ok           ok
api-bulk-apply                api-review-bulk           POST    denied       denied       ok           ok
api-bulk-undo                 api-review-bulk-undo      POST    denied       denied       ok           ok
api-genre-correct             api-genre                 POST    denied       denied       ok           ok
api-genre-accept              api-accept                POST    denied       denied       ok           ok
api-genre-revert              api-revert                POST    denied       denied       ok           ok
# --- API: jobs and generations (own only; admins all) -------------------------------------
api-jobs                      job-list                  GET     denied       ok           ok           ok
api-job-others                job-detail                GET     denied       404          404          ok
api-job-own                   job-detail                GET     -            ok           ok           ok
api-generations               generation-list           GET     ok           ok           ok           ok
api-generation-create         generation-list           POST    denied       ok           ok           ok
api-generation-others-queued  generation-detail         GET     404          404          404          ok
api-generation-own            generation-detail         GET     -            ok           ok           ok
api-generation-finished       generation-detail         GET     ok           ok           ok           ok
api-generation-others-flagged generation-detail         GET     ok           ok           ok           ok
api-generation-own-flagged    generation-detail         GET     -            ok           ok           ok
api-cancel-others             generation-cancel         POST    denied       404          404          ok
api-cancel-own                generation-cancel         POST    -            ok           ok           ok
api-retry-others              generation-retry          POST    denied       404          404          ok
api-retry-own                 generation-retry          POST    -            ok           ok           ok
api-rerun-others              generation-rerun          POST    denied       404          404          ok
api-rerun-own                 generation-rerun          POST    -            ok           ok           ok
# --- API: LoRA cache (read for all, download signed in; no writes: evict in the admin) -----
api-loras                     lora-list                 GET     ok           ok           ok           ok
api-lora                      lora-detail               GET     ok           ok           ok           ok
api-lora-private              lora-detail               GET     404          404          404          ok
api-lora-download             lora-download             GET     denied       ok           ok           ok
api-lora-download-private     lora-download             GET     denied       404          404          ok
api-lora-create               lora-list                 POST    denied       405          405          405
api-lora-delete               lora-detail               DELETE  denied       405          405          405
"""

OUTCOMES = {"ok", "denied", "login", "admin-login", "403", "404", "405", "-"}


@dataclass(frozen=True)
class Row:
    case: str
    route: str
    method: str
    expect: dict[str, str]


def _parse(table: str) -> list[Row]:
    rows = []
    for line in table.strip().splitlines()[1:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        case, route, method, *outcomes = line.split()
        assert len(outcomes) == len(ROLES), line
        assert set(outcomes) <= OUTCOMES, line
        rows.append(Row(case, route, method, dict(zip(ROLES, outcomes, strict=True))))
    assert len({r.case for r in rows}) == len(rows), "case names must be unique"
    return rows


ROWS = _parse(MATRIX)


# --------------------------------------------------------------------------- the world


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
    return Generation.objects.create(
        user=owner,
        job=job,
        prompt=f"{owner.username} {state} request",
        seed=7,
        steps=3,
        guidance=7.5,
        width=64,
        height=64,
        sampler="ddim",
        k=4,
        weight_artist_style=0.6,
        weight_genre_style=0.4,
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


# --------------------------------------------------------------------------- the cases

Call = Callable[[Client], object]


def get(url: str, data: dict | None = None) -> Call:
    return lambda client: client.get(url, data or {})


def post(url: str, data: dict | None = None) -> Call:
    return lambda client: client.post(url, data or {})


def api(method: str, url: str, data: dict | None = None) -> Call:
    return lambda client: getattr(client, method)(url, data, content_type="application/json")


def text(response) -> str:
    return response.content.decode()


def _redirects_to(response, url: str) -> None:
    assert response["Location"] == url, response["Location"]


def contains(*needles: str):
    def check(w, response, client):
        body = text(response)
        for needle in needles:
            assert needle in body, needle

    return check


def api_ok(check: Callable[[World, object], bool | None] | None = None):
    """A JSON answer; `check` asserts itself or returns whether the payload is right."""

    def run(w, response, client):
        assert response["Content-Type"].startswith("application/json")
        payload = response.json()
        if check:
            assert check(w, payload) is not False, payload

    return run


def redirects_to(expected: Callable[[World], str], then=None):
    def check(w, response, client):
        assert response["Location"] == expected(w)
        if then:
            then(w, response, client)

    return check


@dataclass(frozen=True)
class Case:
    """How to exercise one row: `prepare` makes what the request needs (before the
    snapshot) and returns the request; `check` proves an allowed request worked."""

    prepare: Callable[[World], Call]
    check: Callable[[World, object, Client], None] | None = None
    ok: tuple[int, ...] = (200,)
    writes: bool = False  # False: an allowed request must leave the database unchanged
    needs: Callable[[World], object] | None = None  # objects to make before the snapshot


def _current(w: World, key: str) -> tuple[str | None, str]:
    art = w.artwork(key)
    return (art.genre.name if art.genre else None, art.genre_source)


def _label_by_actor(w: World, key: str, genre: str) -> None:
    assert _current(w, key) == (genre, LabelSource.CURATOR)
    latest = GenreLabel.objects.filter(artwork=w.art[key]).latest("id")
    assert latest.user == w.actor and latest.genre.name == genre


# Checks of allowed writes -------------------------------------------------------------


def _generation_created(w, response, client):
    created = Generation.objects.filter(user=w.actor, prompt="a harbour by Ada Lane, cubism")
    assert created.count() == 1 and created.get().job.status == JobStatus.QUEUED
    if response.status_code == 302:  # the page sends the requester to the new request's page
        assert response["Location"] == reverse("generation:detail", args=[created.get().pk])


def _cancelled(owner: str):
    def check(w, response, client):
        generation = getattr(w, owner)["queued"]
        generation.job.refresh_from_db()
        assert generation.job.status == JobStatus.CANCELLED

    return check


def _retried(owner: str):
    def check(w, response, client):
        generation = getattr(w, owner)["failed"]
        old_job = generation.job_id
        generation.refresh_from_db()
        assert generation.job_id != old_job and generation.job.status == JobStatus.QUEUED

    return check


def _rerun(owner: str):
    def check(w, response, client):
        original = getattr(w, owner)["finished"]
        rerun = Generation.objects.get(rerun_of=original)
        assert rerun.user == w.actor and rerun.job.status == JobStatus.QUEUED
        assert rerun.retrieval == original.retrieval and rerun.seed == original.seed

    return check


def _bulk_applied(w, response, client):
    _label_by_actor(w, "b", "cityscape")
    assert BulkOperation.objects.filter(user=w.actor, count=1).exists()


def _bulk_undone(w, response, client):
    assert _current(w, "d") == ("landscape", LabelSource.WIKIART)
    w.op.refresh_from_db()
    assert w.op.undone_by == w.actor


def _reverted(w, response, client):
    _label_by_actor(w, "c", "cityscape")


def _signed_in_as(username_of: Callable[[World], str]):
    def check(w, response, client):
        assert response["Location"] == "/"
        user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
        assert user.username == username_of(w)
        assert f">{user.username}" in text(client.get("/"))  # the header says who it is

    return check


def _signed_out(w, response, client):
    assert response["Location"] == "/" and "_auth_user_id" not in client.session
    assert "Sign in</a>" in text(client.get("/"))


def _password_changed(w, response, client):
    assert response["Location"] == reverse("password_change_done")
    w.actor.refresh_from_db()
    assert w.actor.check_password(NEW_PASSWORD)


def _reset_mail_sent(w, response, client):
    assert response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [w.olga.email]
    assert "/accounts/reset/" in mail.outbox[0].body


def _reset_by_link(w: World) -> Call:
    uid = urlsafe_base64_encode(force_bytes(w.olga.pk))
    token = default_token_generator.make_token(w.olga)

    def call(client):
        link = client.get(reverse("password_reset_confirm", args=[uid, token]))
        assert link.status_code == 302  # to the set-password form (token kept in the session)
        passwords = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
        return client.post(link["Location"], passwords)

    return call


def _reset_done(w, response, client):
    assert response["Location"] == reverse("password_reset_complete")
    w.olga.refresh_from_db()
    assert w.olga.check_password(NEW_PASSWORD)


def _admin_user_added(w, response, client):
    added = get_user_model().objects.get(username="newbie")
    assert response["Location"] == reverse("admin:auth_user_change", args=[added.pk])
    assert added.check_password(NEW_PASSWORD) and not added.is_staff


def _made_curator(w, response, client):
    assert response["Location"] == reverse("admin:auth_user_changelist")
    olga = get_user_model().objects.get(pk=w.olga.pk)
    assert olga.has_perm("catalog.curate_genre") and not olga.is_staff


def _index_job_queued(w, response, client):
    job = Job.objects.get(kind="index_rebuild")
    assert job.user == w.actor and job.status == JobStatus.QUEUED


def _genre_training_queued(w, response, client):
    job = Job.objects.get(kind="train_genre_model")
    assert job.user == w.actor and job.status == JobStatus.QUEUED


def _lora_evicted(w, response, client):
    w.lora.refresh_from_db()
    assert w.lora.status == LoraStatus.EVICTED and w.lora.size_bytes == 0
    assert not (Path(w.settings.LORA_DIR) / "loras" / f"{w.lora.key}.safetensors").exists()


def _download(w, response, client):
    assert "attachment" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == b"lora weights"


# Checks of allowed reads -------------------------------------------------------------


def _artwork_page(w, response, client):
    body = text(response)
    assert "Bridge at Night" in body and "Ada Lane" in body
    # Only curators see "revert to this" (the form it posts is theirs alone).
    revert = reverse("labelling:revert", args=[w.art["c"].pk, w.c_wikiart.pk])
    assert (revert in body) == (w.role in ("curator", "admin"))


def _controls_shown(expected: Callable[[World], bool]):
    def check(w, response, client):
        assert ('id="cancel-form"' in text(response)) == expected(w)

    return check


def _own_requests_listed(w, response, client):
    body = text(response)
    for generation in w.own.values():
        assert generation.prompt in body
    assert "olga" not in body  # nobody else's requests


def _gallery(w, response, client):
    body = text(response)
    assert w.others["finished"].prompt in body
    assert w.others["queued"].prompt not in body and w.others["failed"].prompt not in body


def _flagged_image(whose: str):
    """A flagged image and its URL reach only its owner and admins; others get a notice."""

    def check(w, response, client):
        body = text(response)
        url = w.flagged[whose].image.url
        if whose == "own" or w.role == "admin":
            assert url in body
        else:
            assert url not in body and "flagged by the safety checker" in body

    return check


def _gallery_flagged(w, response, client):
    body = text(response)
    visible = w.role == "admin"
    assert (w.flagged["others"].image.url in body) == visible
    assert (w.flagged["others"].prompt in body) == visible
    if w.actor:
        assert w.flagged["own"].image.url in body and "only you can see it" in body


def _generation_ids(payload) -> set[int]:
    return {g["id"] for g in payload["results"]}


def _generations_visible(w, payload):
    """Anonymous: finished results only; a user: those plus their own; admins: all."""
    generations = w.all_generations()
    if w.role == "admin":
        expected = {g.pk for g in generations}
    else:
        expected = {w.others["finished"].pk} | {g.pk for g in generations if g.user == w.actor}
    assert _generation_ids(payload) == expected


def _jobs_visible(w, payload):
    ids = {j["id"] for j in payload["results"]}
    generations = w.all_generations()
    if w.role == "admin":
        assert ids == {g.job_id for g in generations}
    else:
        assert ids == {g.job_id for g in generations if g.user == w.actor}


def _search_hits(payload):
    assert "Harbour at Dawn" in {h["artwork"]["title"] for h in payload["results"]}


def _titles(payload) -> set[str]:
    return {item["title"] for item in payload["results"]}


def _media_file(w: World) -> Call:
    from django.conf import settings

    image = Path(settings.MEDIA_ROOT) / "artworks" / "harbour.jpg"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"\xff\xd8 not a jpeg")
    return get(f"/{settings.MEDIA_URL.strip('/')}/artworks/harbour.jpg")


def _media_served(w, response, client):
    assert b"".join(response.streaming_content) == b"\xff\xd8 not a jpeg"


def _image(key: str, *, dotted: bool = False) -> Callable[[World], Call]:
    """A generation's image file by its URL (`dotted`: by a path that reaches the same
    file through `artworks/..`, which must meet the same check)."""

    def prepare(w):
        generation = w.flagged[key] if key in w.flagged else w.images[key]
        url = generation.image.url
        if dotted:
            url = url.replace("/generations/", "/artworks/../generations/")
        return get(url)

    return prepare


def _image_served(w, response, client):
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == PNG_BYTES


def _loras_visible(w, payload):
    """Others see the LoRA of a public result only; admins every LoRA."""
    keys = {e["key"] for e in payload["results"]}
    expected = {w.lora.key} | ({w.private_lora.key} if w.role == "admin" else set())
    assert keys == expected, keys


def _token_issued(w, response, client):
    who = w.actor or w.olga
    assert response.json() == {"token": Token.objects.get(user=who).key}


def _token_revoked(w, response, client):
    assert not Token.objects.filter(user=w.actor).exists()


def _bulk_form_data(w):
    # The page posts each row's label version from its preview (bulk_apply checks it).
    return {
        "action": "relabel",
        "target": "cityscape",
        "artwork": [w.art["b"].pk],
        f"version_{w.art['b'].pk}": _version(w, "b"),
    }


def _admin_action(url_name: str, action: str, obj: Callable[[World], object]):
    def prepare(w):
        return post(reverse(url_name), {"action": action, "_selected_action": [obj(w).pk]})

    return prepare


def _make_curator(w):
    curators = Group.objects.get(name="curators")
    url = reverse("admin:auth_user_change", args=[w.olga.pk])
    data = {
        "username": "olga",
        "email": w.olga.email,
        "is_active": "on",
        "groups": [curators.pk],
        "date_joined_0": "2024-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2024-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    return post(url, data)


GENERATION_FORM = {
    "prompt": "a harbour by Ada Lane, cubism",
    "steps": 3,
    "guidance": 7.5,
    "width": 64,
    "height": 64,
    "sampler": "ddim",
    "k": 4,
    "weight_artist_style": 0.6,
    "weight_genre_style": 0.4,
}


def _version(w, key):
    return w.artwork(key).label_version


CASES: dict[str, Case] = {
    # pages: browse and search
    "home": Case(lambda w: get("/"), contains("Harbour at Dawn", "Lady in Blue", "Quiet Hills")),
    "artwork-page": Case(
        lambda w: get(reverse("catalog:artwork-detail", args=[w.art["c"].pk])), _artwork_page
    ),
    "search-page": Case(
        lambda w: get(reverse("retrieval:search"), {"q": "harbour at dawn"}),
        contains("Harbour at Dawn"),
    ),
    "search-form": Case(
        lambda w: post(reverse("retrieval:search"), {"q": "harbour at dawn", "k": 10}),
        contains("Harbour at Dawn"),
    ),
    "similar-fragment": Case(
        lambda w: get(reverse("retrieval:similar", args=[w.art["a"].pk])),
        contains("Quiet Hills"),
    ),
    "media-file": Case(_media_file, _media_served),
    "gen-image-finished": Case(_image("finished"), _image_served),
    "gen-image-others-failed": Case(_image("others-failed"), _image_served),
    "gen-image-own-failed": Case(_image("own-failed"), _image_served),
    "gen-image-others-flagged": Case(_image("others"), _image_served),
    "gen-image-own-flagged": Case(_image("own"), _image_served),
    "gen-image-by-dotted-path": Case(_image("others-failed", dotted=True), _image_served),
    "favicon": Case(
        lambda w: get("/favicon.ico"),
        lambda w, response, client: _redirects_to(response, static("favicon.svg")),
        ok=(302,),
    ),
    "gallery-page": Case(
        lambda w: get(reverse("generation:gallery")), _gallery, needs=World.all_generations
    ),
    # pages: generation
    "generate-page": Case(
        lambda w: get(reverse("generation:generate")),
        _own_requests_listed,
        needs=World.all_generations,
    ),
    "generate-form": Case(
        lambda w: post(reverse("generation:generate"), GENERATION_FORM),
        _generation_created,
        ok=(302,),
        writes=True,
    ),
    "gen-page-others-queued": Case(
        lambda w: get(reverse("generation:detail", args=[w.others["queued"].pk])),
        _controls_shown(lambda w: True),
    ),
    "gen-page-others-failed": Case(
        lambda w: get(reverse("generation:detail", args=[w.others["failed"].pk])),
        contains("olga failed request"),
    ),
    "gen-page-own": Case(
        lambda w: get(reverse("generation:detail", args=[w.own["queued"].pk])),
        _controls_shown(lambda w: True),
    ),
    "gen-page-finished": Case(
        lambda w: get(reverse("generation:detail", args=[w.others["finished"].pk])),
        _controls_shown(lambda w: w.role == "admin"),  # the owner or an admin only
    ),
    "gen-page-others-flagged": Case(
        lambda w: get(reverse("generation:detail", args=[w.flagged["others"].pk])),
        _flagged_image("others"),
    ),
    "gen-page-own-flagged": Case(
        lambda w: get(reverse("generation:detail", args=[w.flagged["own"].pk])),
        _flagged_image("own"),
    ),
    "gallery-flagged": Case(
        lambda w: get(reverse("generation:gallery")), _gallery_flagged, needs=lambda w: w.flagged
    ),
    "gen-result-others-queued": Case(
        lambda w: get(reverse("generation:result", args=[w.others["queued"].pk]))
    ),
    "gen-result-finished": Case(
        lambda w: get(reverse("generation:result", args=[w.others["finished"].pk])),
        contains("generations/done.png"),
    ),
    "gen-cancel-form-others": Case(
        lambda w: post(reverse("generation:cancel", args=[w.others["queued"].pk])),
        _cancelled("others"),
        ok=(302,),
        writes=True,
    ),
    "gen-cancel-form-own": Case(
        lambda w: post(reverse("generation:cancel", args=[w.own["queued"].pk])),
        _cancelled("own"),
        ok=(302,),
        writes=True,
    ),
    "gen-retry-form-others": Case(
        lambda w: post(reverse("generation:retry", args=[w.others["failed"].pk])),
        _retried("others"),
        ok=(302,),
        writes=True,
    ),
    "gen-retry-form-own": Case(
        lambda w: post(reverse("generation:retry", args=[w.own["failed"].pk])),
        _retried("own"),
        ok=(302,),
        writes=True,
    ),
    "gen-rerun-form-others": Case(
        lambda w: post(reverse("generation:rerun", args=[w.others["finished"].pk])),
        _rerun("others"),
        ok=(302,),
        writes=True,
    ),
    "gen-rerun-form-own": Case(
        lambda w: post(reverse("generation:rerun", args=[w.own["finished"].pk])),
        _rerun("own"),
        ok=(302,),
        writes=True,
    ),
    "lora-download-page": Case(
        lambda w: get(reverse("generation:lora-download", args=[w.lora.key]), {"as": "diffusers"}),
        _download,
    ),
    "lora-download-page-private": Case(
        lambda w: get(
            reverse("generation:lora-download", args=[w.private_lora.key]), {"as": "diffusers"}
        ),
        _download,
    ),
    # pages: review
    "review-page": Case(lambda w: get(reverse("labelling:review")), contains("Lady in Blue")),
    "review-item-fragment": Case(
        lambda w: get(reverse("labelling:item", args=[w.art["b"].pk])), contains("Lady in Blue")
    ),
    "bulk-page": Case(
        lambda w: get(reverse("labelling:bulk"), {"action": "relabel", "target": "cityscape"}),
        contains("would change", "Lady in Blue"),
    ),
    "bulk-form": Case(
        lambda w: post(reverse("labelling:bulk"), _bulk_form_data(w)),
        redirects_to(lambda w: reverse("labelling:bulk"), _bulk_applied),
        ok=(302,),
        writes=True,
    ),
    "bulk-undo-form": Case(
        lambda w: post(reverse("labelling:bulk-undo", args=[w.op.pk])),
        redirects_to(lambda w: reverse("labelling:bulk"), _bulk_undone),
        ok=(302,),
        writes=True,
    ),
    "revert-form": Case(
        lambda w: post(
            reverse("labelling:revert", args=[w.art["c"].pk, w.c_wikiart.pk]),
            {"expected_version": _version(w, "c")},
        ),
        redirects_to(lambda w: reverse("catalog:artwork-detail", args=[w.art["c"].pk]), _reverted),
        ok=(302,),
        writes=True,
    ),
    # pages: accounts
    "login-page": Case(lambda w: get(reverse("login")), contains('name="password"')),
    "login-form": Case(
        lambda w: post(
            reverse("login"),
            {"username": (w.actor or w.olga).username, "password": PASSWORD},
        ),
        _signed_in_as(lambda w: (w.actor or w.olga).username),
        ok=(302,),
    ),
    "logout-form": Case(lambda w: post(reverse("logout")), _signed_out, ok=(302,)),
    "logout-by-link": Case(lambda w: get(reverse("logout"))),
    "password-change-page": Case(
        lambda w: get(reverse("password_change")), contains('name="new_password1"')
    ),
    "password-change-form": Case(
        lambda w: post(
            reverse("password_change"),
            {
                "old_password": PASSWORD,
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
        ),
        _password_changed,
        ok=(302,),
        writes=True,
    ),
    "password-change-done": Case(lambda w: get(reverse("password_change_done"))),
    "password-reset-page": Case(lambda w: get(reverse("password_reset")), contains('name="email"')),
    "password-reset-form": Case(
        lambda w: post(reverse("password_reset"), {"email": w.olga.email}),
        _reset_mail_sent,
        ok=(302,),
    ),
    "password-reset-done": Case(lambda w: get(reverse("password_reset_done"))),
    "password-reset-confirm": Case(_reset_by_link, _reset_done, ok=(302,), writes=True),
    "password-reset-complete": Case(lambda w: get(reverse("password_reset_complete"))),
    # the Django admin
    "admin-index": Case(lambda w: get(reverse("admin:index")), contains("LoRA cache")),
    "admin-user-add": Case(
        lambda w: post(
            reverse("admin:auth_user_add"),
            {
                "username": "newbie",
                "usable_password": "true",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        ),
        _admin_user_added,
        ok=(302,),
        writes=True,
    ),
    "admin-make-curator": Case(_make_curator, _made_curator, ok=(302,), writes=True),
    "admin-rebuild-index": Case(
        _admin_action(
            "admin:retrieval_embeddingspace_changelist", "rebuild_index", lambda w: w.space
        ),
        _index_job_queued,
        ok=(302,),
        writes=True,
    ),
    "admin-lora-evict": Case(
        _admin_action(
            "admin:generation_loracacheentry_changelist", "evict_selected", lambda w: w.lora
        ),
        _lora_evicted,
        ok=(302,),
        writes=True,
    ),
    "admin-retrain-genre-model": Case(
        lambda w: post(reverse("admin:labelling_genremodelversion_retrain")),
        _genre_training_queued,
        ok=(302,),
        writes=True,
    ),
    "admin-lora-evict-to-budget": Case(
        _admin_action(
            "admin:generation_loracacheentry_changelist", "evict_to_budget", lambda w: w.lora
        ),
        _lora_evicted,
        ok=(302,),
        writes=True,
    ),
    # API: tokens
    "api-token": Case(
        lambda w: api(
            "post",
            reverse("api-token"),
            {"username": (w.actor or w.olga).username, "password": PASSWORD},
        ),
        _token_issued,
        writes=True,
    ),
    "api-token-revoke": Case(
        lambda w: api("delete", reverse("api-token")),
        _token_revoked,
        ok=(204,),
        writes=True,
        needs=lambda w: w.actor and Token.objects.create(user=w.actor),
    ),
    # API: catalog
    "api-root": Case(lambda w: get("/api/"), api_ok(lambda w, p: "artworks" in p)),
    "api-schema": Case(lambda w: get("/api/schema/"), contains("/api/generations/")),
    "api-docs": Case(lambda w: get("/api/docs/"), contains("swagger")),
    "api-artworks": Case(
        lambda w: get("/api/artworks/"),
        api_ok(lambda w, p: _titles(p) >= {"Harbour at Dawn", "Quiet Hills"}),
    ),
    "api-artwork-create": Case(lambda w: api("post", "/api/artworks/", {"title": "Forged"})),
    "api-artwork": Case(
        lambda w: get(f"/api/artworks/{w.art['a'].pk}/"),
        api_ok(lambda w, p: p["title"] == "Harbour at Dawn"),
    ),
    "api-artwork-delete": Case(lambda w: api("delete", f"/api/artworks/{w.art['a'].pk}/")),
    "api-artwork-labels": Case(
        lambda w: get(f"/api/artworks/{w.art['c'].pk}/labels/"),
        api_ok(lambda w, p: [x["source"] for x in p] == ["wikiart", "curator"]),
    ),
    "api-artists": Case(lambda w: get("/api/artists/"), contains("ada-lane")),
    "api-artist": Case(lambda w: get("/api/artists/ada-lane/"), contains("Ada Lane")),
    "api-styles": Case(lambda w: get("/api/styles/"), contains("Cubism")),
    "api-style": Case(lambda w: get("/api/styles/Cubism/"), contains("Cubism")),
    "api-genres": Case(lambda w: get("/api/genres/"), contains("cityscape", "portrait")),
    "api-genre-item": Case(lambda w: get("/api/genres/portrait/"), contains("portrait")),
    # API: retrieval
    "api-search": Case(
        lambda w: get("/api/search/", {"q": "harbour at dawn", "k": 5}),
        api_ok(lambda w, p: _search_hits(p)),
    ),
    "api-search-post": Case(
        lambda w: api("post", "/api/search/", {"q": "harbour at dawn", "k": 5}),
        api_ok(lambda w, p: _search_hits(p)),
    ),
    "api-similar": Case(
        lambda w: get(f"/api/artworks/{w.art['a'].pk}/similar/", {"k": 3}),
        api_ok(lambda w, p: len(p) == 3 and "Harbour at Dawn" not in str(p)),
    ),
    "api-index-status": Case(lambda w: get("/api/index/"), api_ok()),
    "api-index-rebuild": Case(
        lambda w: api("post", "/api/index/"), _index_job_queued, ok=(202,), writes=True
    ),
    # API: labelling
    "api-review-queue": Case(
        lambda w: get("/api/review/queue/"),
        api_ok(lambda w, p: "Lady in Blue" in {i["artwork"]["title"] for i in p}),
    ),
    "api-bulk-preview": Case(
        lambda w: api(
            "post",
            "/api/review/bulk/",
            {"action": "relabel", "genre": "cityscape", "artwork_ids": [w.art["b"].pk]},
        ),
        api_ok(lambda w, p: p["count"] == 1 and p["changes"][0]["new"] == "cityscape"),
    ),
    "api-bulk-apply": Case(
        lambda w: api(
            "post",
            "/api/review/bulk/",
            {
                "action": "relabel",
                "genre": "cityscape",
                "artwork_ids": [w.art["b"].pk],
                "preview": False,
            },
        ),
        _bulk_applied,
        ok=(201,),
        writes=True,
    ),
    "api-bulk-undo": Case(
        lambda w: api("post", f"/api/review/bulk/{w.op.pk}/undo/"),
        _bulk_undone,
        writes=True,
    ),
    "api-genre-correct": Case(
        lambda w: api(
            "post",
            f"/api/artworks/{w.art['a'].pk}/genre/",
            {"genre": "cityscape", "expected_version": _version(w, "a")},
        ),
        lambda w, r, c: _label_by_actor(w, "a", "cityscape"),
        writes=True,
    ),
    "api-genre-accept": Case(
        lambda w: api(
            "post",
            f"/api/artworks/{w.art['a'].pk}/accept/",
            {"expected_version": _version(w, "a")},
        ),
        lambda w, r, c: _label_by_actor(w, "a", "landscape"),
        writes=True,
    ),
    "api-genre-revert": Case(
        lambda w: api(
            "post",
            f"/api/artworks/{w.art['c'].pk}/revert/",
            {"label_id": w.c_wikiart.pk, "expected_version": _version(w, "c")},
        ),
        _reverted,
        writes=True,
    ),
    # API: jobs and generations
    "api-jobs": Case(
        lambda w: get("/api/jobs/"), api_ok(_jobs_visible), needs=World.all_generations
    ),
    "api-job-others": Case(
        lambda w: get(f"/api/jobs/{w.others['queued'].job_id}/"),
        api_ok(lambda w, p: p["status"] == "queued"),
    ),
    "api-job-own": Case(
        lambda w: get(f"/api/jobs/{w.own['queued'].job_id}/"),
        api_ok(lambda w, p: p["id"] == w.own["queued"].job_id),
    ),
    "api-generations": Case(
        lambda w: get("/api/generations/"),
        api_ok(_generations_visible),
        needs=World.all_generations,
    ),
    "api-generation-create": Case(
        lambda w: api("post", "/api/generations/", {"prompt": GENERATION_FORM["prompt"]}),
        _generation_created,
        ok=(202,),
        writes=True,
    ),
    "api-generation-others-queued": Case(
        lambda w: get(f"/api/generations/{w.others['queued'].pk}/"),
        api_ok(lambda w, p: p["user"] == "olga" and p["status"] == "queued"),
    ),
    "api-generation-own": Case(
        lambda w: get(f"/api/generations/{w.own['queued'].pk}/"),
        api_ok(lambda w, p: p["user"] == w.actor.username),
    ),
    "api-generation-finished": Case(
        lambda w: get(f"/api/generations/{w.others['finished'].pk}/"),
        api_ok(lambda w, p: p["status"] == "succeeded"),
    ),
    "api-generation-others-flagged": Case(
        lambda w: get(f"/api/generations/{w.flagged['others'].pk}/"),
        _flagged_image("others"),
    ),
    "api-generation-own-flagged": Case(
        lambda w: get(f"/api/generations/{w.flagged['own'].pk}/"),
        _flagged_image("own"),
    ),
    "api-cancel-others": Case(
        lambda w: api("post", f"/api/generations/{w.others['queued'].pk}/cancel/"),
        _cancelled("others"),
        writes=True,
    ),
    "api-cancel-own": Case(
        lambda w: api("post", f"/api/generations/{w.own['queued'].pk}/cancel/"),
        _cancelled("own"),
        writes=True,
    ),
    "api-retry-others": Case(
        lambda w: api("post", f"/api/generations/{w.others['failed'].pk}/retry/"),
        _retried("others"),
        ok=(202,),
        writes=True,
    ),
    "api-retry-own": Case(
        lambda w: api("post", f"/api/generations/{w.own['failed'].pk}/retry/"),
        _retried("own"),
        ok=(202,),
        writes=True,
    ),
    "api-rerun-others": Case(
        lambda w: api("post", f"/api/generations/{w.others['finished'].pk}/rerun/"),
        _rerun("others"),
        ok=(202,),
        writes=True,
    ),
    "api-rerun-own": Case(
        lambda w: api("post", f"/api/generations/{w.own['finished'].pk}/rerun/"),
        _rerun("own"),
        ok=(202,),
        writes=True,
    ),
    # API: LoRA cache
    "api-loras": Case(
        lambda w: get("/api/loras/"),
        api_ok(_loras_visible),
        needs=lambda w: (w.lora, w.private_lora),
    ),
    "api-lora": Case(
        lambda w: get(f"/api/loras/{w.lora.key}/"),
        api_ok(lambda w, p: p["status"] == "ready"),
    ),
    "api-lora-private": Case(
        lambda w: get(f"/api/loras/{w.private_lora.key}/"),
        api_ok(lambda w, p: p["status"] == "ready"),
    ),
    "api-lora-download": Case(
        lambda w: get(f"/api/loras/{w.lora.key}/download/", {"as": "diffusers"}), _download
    ),
    "api-lora-download-private": Case(
        lambda w: get(f"/api/loras/{w.private_lora.key}/download/", {"as": "diffusers"}),
        _download,
    ),
    "api-lora-create": Case(
        lambda w: api("post", "/api/loras/", {"key": "x"}), needs=lambda w: w.lora
    ),
    "api-lora-delete": Case(lambda w: api("delete", f"/api/loras/{w.lora.key}/")),
}

# One changelist per registered admin model (`admin-list:<app>.<model>` rows).
for _model in django_admin.site._registry:
    _meta = _model._meta
    CASES[f"admin-list:{_meta.label_lower}"] = Case(
        lambda w, m=_meta: get(reverse(f"admin:{m.app_label}_{m.model_name}_changelist")),
        contains('id="changelist"'),
        needs=lambda w: (w.lora, w.all_generations()),
    )


# --------------------------------------------------------------------------- the tests

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def catalog(django_db_setup, django_db_blocker, tmp_path_factory):
    """The catalog and its search index, made once for the module in a transaction that is
    rolled back at its end (what `TestCase.setUpTestData` does); each test runs in a
    savepoint inside it. Indexing once keeps 400 tests fast."""
    import torch  # the embedder's; one thread: other suites share this machine's cores

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    index_dir = tmp_path_factory.mktemp("roles-index")
    fast = override_settings(
        PASSWORD_HASHERS=FAST_HASHERS, RETRIEVAL_INDEX_DIR=index_dir, RETRIEVAL_EMBEDDER="minilm"
    )
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            with fast:
                made = Catalog.make()
                index_rebuild()
        except BaseException:
            outer.__exit__(*sys.exc_info())
            torch.set_num_threads(threads)
            raise
    yield made, index_dir
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)
    torch.set_num_threads(threads)


@pytest.fixture
def world(request, catalog, settings, tmp_path):
    """`world(role)`: the catalog as `role` sees it, with fast settings for one test."""
    made, index_dir = catalog
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.RETRIEVAL_INDEX_DIR = index_dir
    settings.LORA_DIR = tmp_path / "loras"
    settings.LORA_CACHE_BUDGET_MB = 1
    settings.GEN_MAX_QUEUED = 10
    return lambda role: World(role, settings, made)


def _params():
    for row in ROWS:
        for role in ROLES:
            if row.expect[role] != "-":
                yield pytest.param(row, role, id=f"{row.case}-{role}")


@pytest.mark.parametrize(("row", "role"), list(_params()))
def test_role_matrix(row: Row, role: str, client, world):
    case = CASES[row.case]
    w = world(role)
    if w.actor:
        client.force_login(w.actor)
    if case.needs:
        case.needs(w)
    request = case.prepare(w)
    mail.outbox.clear()
    before = snapshot(w.settings)

    response = request(client)

    expected = row.expect[role]
    if expected == "ok":
        assert response.status_code in case.ok, (response.status_code, text(response)[:500])
        if case.check:
            case.check(w, response, client)
        if not case.writes:
            assert snapshot(w.settings) == before, "a read changed the database"
        return
    code = response.status_code
    if expected == "denied":
        assert code in ((401, 403) if role == "anonymous" else (403,)), code
    elif expected == "login":
        assert code == 302 and response["Location"].startswith(reverse("login") + "?next="), code
    elif expected == "admin-login":
        login = reverse("admin:login") + "?next="
        assert code == 302 and response["Location"].startswith(login), code
    else:
        assert code == int(expected), code
    assert snapshot(w.settings) == before, "a refused request changed the database"
    assert not mail.outbox


# --------------------------------------------------------------------------- the guards


def _url_patterns(resolver=None, namespace: str = "", prefix: str = ""):
    """(route key, full pattern, callback) of every URL pattern, included ones too."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _url_patterns(pattern, inner, prefix + str(pattern.pattern))
            continue
        if namespace == "admin" or namespace.startswith("admin:"):
            key = ADMIN
        elif pattern.callback is media_view:
            key = "media"
        elif pattern.name:
            key = f"{namespace}:{pattern.name}" if namespace else pattern.name
        else:
            key = prefix + str(pattern.pattern)
        yield key, prefix + str(pattern.pattern), pattern.callback


def _api_methods(callback) -> set[str]:
    """The HTTP methods a DRF view answers (viewsets: its router actions)."""
    actions = getattr(callback, "actions", None)
    if actions:  # HEAD answers as GET does
        return {method.upper() for method in actions} - {"HEAD", "OPTIONS"}
    cls = getattr(callback, "cls", None)
    verbs = ("get", "post", "put", "patch", "delete")
    return {verb.upper() for verb in verbs if cls is not None and hasattr(cls, verb)}


def _undecided(resolver=None) -> list[str]:
    """URL patterns without a row in MATRIX and, for the API, methods without one."""
    decided = {row.route for row in ROWS}
    decided_methods = {(row.route, row.method) for row in ROWS}
    missing = set()
    for key, route, callback in _url_patterns(resolver):
        if key not in decided:
            missing.add(f"{key} ({route})")
        for method in _api_methods(callback):
            if (key, method) not in decided_methods:
                missing.add(f"{method} {key} ({route})")
    return sorted(missing)


def test_every_url_has_a_role_decision():
    assert not _undecided(), "URLs or API methods without a row in MATRIX"


def test_the_guard_notices_a_new_endpoint():
    """A URLconf with one more page, API view and API method than the table knows."""
    from django.urls import path
    from rest_framework.views import APIView

    import config.urls

    class Extended(retrieval_api.IndexView):
        def delete(self, request):  # a new method on a known endpoint
            raise AssertionError

    class Export(APIView):
        def get(self, request):
            raise AssertionError

    module = types.ModuleType("roles_guard_urls")
    module.urlpatterns = [
        path("api/index/", Extended.as_view(), name="api-index"),
        path("api/export/", Export.as_view(), name="api-export"),
        path("export/", lambda request: None, name="export-page"),
        *config.urls.urlpatterns,
    ]
    assert _undecided(URLResolver(RegexPattern(r"^/"), module)) == [
        "DELETE api-index (api/index/)",
        "GET api-export (api/export/)",
        "api-export (api/export/)",
        "export-page (export/)",
    ]


def test_every_row_is_a_real_url_with_a_case():
    routes = {key for key, _route, _callback in _url_patterns()}
    assert {row.route for row in ROWS} <= routes, "a row names a URL that does not exist"
    assert {row.case for row in ROWS} == set(CASES), "MATRIX rows and CASES differ"
    admin_models = {f"admin-list:{m._meta.label_lower}" for m in django_admin.site._registry}
    assert admin_models <= {row.case for row in ROWS}, "an admin model without a row"


# --------------------------------------------------------------------------- the header


@pytest.mark.parametrize("role", ROLES)
def test_header_shows_who_is_signed_in(role, client, world):
    w = world(role)
    if w.actor:
        client.force_login(w.actor)
    body = text(client.get("/"))
    header = body.split("<header", 1)[1].split("</header>", 1)[0]
    if w.actor is None:
        assert 'href="/accounts/login/?next=/"' in header and "Sign out" not in header
    else:
        assert w.actor.username in header.split('class="who"', 1)[1]
        # Sign-out is a POST form with a CSRF token (Django 5 refuses GET /accounts/logout/).
        assert 'method="post" action="/accounts/logout/"' in header
        assert 'name="csrfmiddlewaretoken"' in header and "Sign in</a>" not in header
    assert ('href="/review/"' in header) == (role in ("curator", "admin"))
    assert ('href="/admin/"' in header) == (role == "admin")


def _csrf(html: str) -> str:
    return html.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]


def test_sign_in_and_out_through_the_pages(world):
    """The real pages with CSRF checks on, as a browser would use them."""
    w = world("curator")
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/accounts/login/?next=/review/")
    assert page.status_code == 200 and 'name="username"' in text(page)
    wrong = browser.post(
        "/accounts/login/",
        {"username": "cora", "password": "nope", "csrfmiddlewaretoken": _csrf(text(page))},
    )
    assert wrong.status_code == 200 and "didn't match" in text(wrong)
    assert "_auth_user_id" not in browser.session
    signed_in = browser.post(
        "/accounts/login/",
        {
            "username": "cora",
            "password": PASSWORD,
            "next": "/review/",
            "csrfmiddlewaretoken": _csrf(text(wrong)),
        },
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/review/"
    home = text(browser.get("/"))
    assert "cora" in home.split('class="who"', 1)[1].split("</span>", 1)[0]
    # Without the token the sign-out form's post is refused; with it, it signs out.
    assert browser.post("/accounts/logout/").status_code == 403
    out = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": _csrf(home)})
    assert out.status_code == 302 and out["Location"] == "/"
    assert "_auth_user_id" not in browser.session
    assert "Sign in</a>" in text(browser.get("/"))
    assert w.actor.username == "cora"


def test_signed_in_user_sent_to_a_curator_page_is_told_why(world, client):
    """The sign-in page, reached with ?next= by a signed-in non-curator, explains itself."""
    client.force_login(world("user").actor)
    page = client.get("/accounts/login/?next=/review/")
    assert page.status_code == 200 and "cannot open that page" in text(page)


def test_a_curators_session_cannot_be_used_cross_site(world):
    """API writes by session need the CSRF token, so another site cannot post them with a
    curator's cookie (the test client skips this check unless asked)."""
    w = world("curator")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(w.actor)
    art = w.artwork("a")
    url = f"/api/artworks/{art.pk}/genre/"
    body = {"genre": "cityscape", "expected_version": art.label_version}
    forged = browser.post(url, body, content_type="application/json")
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    assert w.artwork("a").label_version == art.label_version
    token = _csrf(text(browser.get("/")))
    sent = browser.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert sent.status_code == 200 and w.artwork("a").genre.name == "cityscape"
