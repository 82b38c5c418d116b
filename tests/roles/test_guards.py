"""The guards: every URL (and API method) has a role decision, and every row a real URL."""

from __future__ import annotations

import types

from django.contrib import admin as django_admin
from django.urls import URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

from config.media import media_view
from retrieval.api import views as retrieval_api
from tests.roles.cases import CASES
from tests.roles.matrix import ADMIN, ROWS


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
