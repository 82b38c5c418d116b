"""The media URL: generation images through their permission check, other files as files.

`MEDIA_URL` serves two kinds of files. Artwork images and thumbnails are public (the
catalog is) and are served as they are when MYTHRAGEN_SERVE_MEDIA is on (the embedded
setup; production may serve them from a web server or object storage instead).
Generation images (`generations/...`) are private until their generation is finished and
public: they always go through `generation.views.generation_image_view`, whatever
MYTHRAGEN_SERVE_MEDIA says, so a web server in front must not serve that folder itself.
The path is normalised first, as `django.views.static.serve` does, so "./generations/..."
or "a/../generations/..." cannot reach the files without the check.
"""

from __future__ import annotations

import posixpath

from django.conf import settings
from django.http import Http404
from django.views.static import serve

from generation.views import generation_image_view

GENERATIONS = "generations"


def media_view(request, path: str):
    name = posixpath.normpath(path).lstrip("/")
    if name.lower() == GENERATIONS or name.lower().startswith(GENERATIONS + "/"):
        return generation_image_view(request, name)
    if not settings.SERVE_MEDIA:
        raise Http404("media are served by the web server")
    return serve(request, path, document_root=settings.MEDIA_ROOT)
