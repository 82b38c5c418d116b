from importlib import import_module

from django.conf import settings
from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter
from rest_framework.urlpatterns import format_suffix_patterns

from accounts import views as accounts_views
from config.media import media_view

# Each app's REST API routes live in its `api/urls.py`, included under /api/ below.
API_APPS = ("accounts", "catalog", "jobs", "labelling", "retrieval", "generation")


def api_root_view():
    """The browsable /api/ root, listing the collections the apps' routers register."""
    root = DefaultRouter()
    for app in API_APPS:
        app_router = getattr(import_module(f"{app}.api.urls"), "router", None)
        if app_router is not None:
            root.registry.extend(app_router.registry)
    return root.get_api_root_view()


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
    *(path("api/", include(f"{app}.api.urls")) for app in API_APPS),
    path("api/", include(format_suffix_patterns([path("", api_root_view(), name="api-root")]))),
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
