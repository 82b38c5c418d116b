from django.conf import settings
from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts import api as accounts_api
from accounts import views as accounts_views
from catalog import api as catalog_api
from config.media import media_view
from generation import api as generation_api
from jobs import api as jobs_api
from labelling import api as labelling_api
from retrieval import api as retrieval_api

router = DefaultRouter()
router.register("artworks", catalog_api.ArtworkViewSet, basename="artwork")
router.register("artists", catalog_api.ArtistViewSet, basename="artist")
router.register("styles", catalog_api.StyleViewSet, basename="style")
router.register("genres", catalog_api.GenreViewSet, basename="genre")
router.register("jobs", jobs_api.JobViewSet, basename="job")
router.register("generations", generation_api.GenerationViewSet, basename="generation")
router.register("loras", generation_api.LoraViewSet, basename="lora")


def favicon(request):
    """Browsers ask for /favicon.ico on pages that link no icon (the admin, DRF's pages):
    send them to the (hashed, long-cached) static icon instead of a 404."""
    return redirect(static("favicon.svg"))


# The admin speaks the product's name (its colours: templates/admin/base_site.html).
admin.site.site_header = "MythraGen administration"
admin.site.site_title = "MythraGen admin"
admin.site.index_title = "Catalog, labels, search index, jobs and generations"
admin.site.site_url = "/"

urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/auth/token/", accounts_api.TokenView.as_view(), name="api-token"),
    path("api/search/", retrieval_api.SearchView.as_view(), name="api-search"),
    path("api/artworks/<int:pk>/similar/", retrieval_api.SimilarView.as_view(), name="api-similar"),
    path("api/index/", retrieval_api.IndexView.as_view(), name="api-index"),
    path("api/review/queue/", labelling_api.ReviewQueueView.as_view(), name="api-review-queue"),
    path("api/review/bulk/", labelling_api.BulkView.as_view(), name="api-review-bulk"),
    path(
        "api/review/bulk/<uuid:op_id>/undo/",
        labelling_api.BulkUndoView.as_view(),
        name="api-review-bulk-undo",
    ),
    path(
        "api/artworks/<int:pk>/genre/", labelling_api.GenreCorrectView.as_view(), name="api-genre"
    ),
    path(
        "api/artworks/<int:pk>/accept/", labelling_api.GenreAcceptView.as_view(), name="api-accept"
    ),
    path(
        "api/artworks/<int:pk>/revert/", labelling_api.GenreRevertView.as_view(), name="api-revert"
    ),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # The sign-in page throttles failures (accounts.views); the rest is Django's.
    path("accounts/login/", accounts_views.LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("review/", include("labelling.urls")),
    path("generate/", include("generation.urls")),
    path("", include("retrieval.urls")),
    path("", include("catalog.urls")),
]

# Media: generation images always, through their permission check; other media when
# MYTHRAGEN_SERVE_MEDIA is on (the embedded setup; production may put storage or a web
# server in front for those). See config/media.py.
urlpatterns += [
    re_path(rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.*)$", media_view, name="media"),
]
