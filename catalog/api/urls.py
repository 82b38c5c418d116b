"""The catalog API's routes, included under /api/ by `config.urls`."""

from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from catalog.api import views

# The API root (`api-root`, listing every app's collections) is config.urls's; the
# format suffixes (`.json`) are those a DefaultRouter adds.
router = SimpleRouter()
router.register("artworks", views.ArtworkViewSet, basename="artwork")
router.register("artists", views.ArtistViewSet, basename="artist")
router.register("styles", views.StyleViewSet, basename="style")
router.register("genres", views.GenreViewSet, basename="genre")

urlpatterns = format_suffix_patterns(router.urls)
