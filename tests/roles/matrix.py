"""The decision: what each role may do with every URL (`MATRIX`), parsed into `ROWS`."""

# The role table (MATRIX) is wider than 100 columns; wrapping it would make it unreadable.
# ruff: noqa: E501
from __future__ import annotations

from dataclasses import dataclass

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
