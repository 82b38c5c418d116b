from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from catalog import api as catalog_api

router = DefaultRouter()
router.register("artworks", catalog_api.ArtworkViewSet, basename="artwork")
router.register("artists", catalog_api.ArtistViewSet, basename="artist")
router.register("styles", catalog_api.StyleViewSet, basename="style")
router.register("genres", catalog_api.GenreViewSet, basename="genre")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("catalog.urls")),
]

if settings.SERVE_MEDIA:
    # The embedded setup serves media itself; production puts storage or a web
    # server in front and sets MYTHRAGEN_SERVE_MEDIA=false.
    urlpatterns += [
        re_path(
            rf"^{settings.MEDIA_URL.strip('/')}/(?P<path>.*)$",
            serve,
            {"document_root": settings.MEDIA_ROOT},
        ),
    ]
