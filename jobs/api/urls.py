"""The jobs API's routes, included under /api/ by `config.urls`."""

from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from jobs.api import views

# The API root (`api-root`, listing every app's collections) is config.urls's; the
# format suffixes (`.json`) are those a DefaultRouter adds.
router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = format_suffix_patterns(router.urls)
