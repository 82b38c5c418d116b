"""How a case calls a URL (`get`, `post`, `api`), the `Case` record, and the checks of
allowed reads and writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from catalog.models import GenreLabel, LabelSource
from generation.models import Generation, LoraStatus
from jobs.models import Job, JobStatus
from labelling.models import BulkOperation
from tests.factories import generation_form
from tests.roles.matrix import NEW_PASSWORD
from tests.roles.world import PNG_BYTES, World

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


GENERATION_FORM = generation_form(prompt="a harbour by Ada Lane, cubism")


def _version(w, key):
    return w.artwork(key).label_version
