"""`CASES`: one request (and check) per `MATRIX` row, plus one changelist per admin model."""

from __future__ import annotations

from django.contrib import admin as django_admin
from django.templatetags.static import static
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.roles.checks import (
    GENERATION_FORM,
    Case,
    _admin_action,
    _admin_user_added,
    _artwork_page,
    _bulk_applied,
    _bulk_form_data,
    _bulk_undone,
    _cancelled,
    _controls_shown,
    _download,
    _flagged_image,
    _gallery,
    _gallery_flagged,
    _generation_created,
    _generations_visible,
    _genre_training_queued,
    _image,
    _image_served,
    _index_job_queued,
    _jobs_visible,
    _label_by_actor,
    _lora_evicted,
    _loras_visible,
    _made_curator,
    _make_curator,
    _media_file,
    _media_served,
    _own_requests_listed,
    _password_changed,
    _redirects_to,
    _rerun,
    _reset_by_link,
    _reset_done,
    _reset_mail_sent,
    _retried,
    _reverted,
    _search_hits,
    _signed_in_as,
    _signed_out,
    _titles,
    _token_issued,
    _token_revoked,
    _version,
    api,
    api_ok,
    contains,
    get,
    post,
    redirects_to,
)
from tests.roles.matrix import NEW_PASSWORD, PASSWORD
from tests.roles.world import World


def _generation_actions(name: str, request, ok: dict[str, tuple[int, ...]]) -> dict[str, Case]:
    """Cancel, retry and rerun, each on another user's generation and on the actor's own:
    `name` formatted with the action and whose, `request(action, generation)`, `ok[action]`."""
    cases = {}
    for action, state, check in (
        ("cancel", "queued", _cancelled),
        ("retry", "failed", _retried),
        ("rerun", "finished", _rerun),
    ):
        for whose in ("others", "own"):
            cases[name.format(action=action, whose=whose)] = Case(
                lambda w, a=action, s=state, o=whose: request(a, getattr(w, o)[s]),
                check(whose),
                ok=ok[action],
                writes=True,
            )
    return cases


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
    **_generation_actions(
        "gen-{action}-form-{whose}",
        lambda action, g: post(reverse(f"generation:{action}", args=[g.pk])),
        ok={"cancel": (302,), "retry": (302,), "rerun": (302,)},
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
    **_generation_actions(
        "api-{action}-{whose}",
        lambda action, g: api("post", f"/api/generations/{g.pk}/{action}/"),
        ok={"cancel": (200,), "retry": (202,), "rerun": (202,)},
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
