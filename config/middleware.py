"""A database outage answers 503 with a clear message, never a 500 traceback.

While PostgreSQL restarts (or SQLite stays locked past its timeout) every query raises
`OperationalError` or `InterfaceError`. This middleware turns those into "503 Service
Unavailable" with a `Retry-After` header: JSON for the API, a small self-contained page
otherwise (no template: the base template's context processors query the database too).
Django closes the broken connection at the end of the request and `CONN_HEALTH_CHECKS`
tests a persistent one before reusing it, so the first request after the database is back
succeeds without restarting the web process.
"""

from __future__ import annotations

import codecs
import logging
import sys

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils.html import escape

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 10
MESSAGE = "The database is unavailable right now (it may be restarting); try again in a moment."
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MythraGen: temporarily unavailable</title>
</head><body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>Temporarily unavailable</h1><p>{message}</p><p><a href="">Reload</a></p></body></html>
"""
BAD_REQUEST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MythraGen: bad request</title>
</head><body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>Bad request</h1><p>{message}</p><p><a href="/">Home</a></p></body></html>
"""


def _wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


def database_unavailable_response(request, exc: BaseException) -> HttpResponse:
    logger.warning(
        "Database unavailable while serving %s %s: %s: %s",
        request.method,
        request.path,
        type(exc).__name__,
        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
    )
    if _wants_json(request):
        response = JsonResponse({"detail": MESSAGE, "code": "database_unavailable"}, status=503)
    else:
        response = HttpResponse(PAGE.format(message=MESSAGE), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """Answer 503 when the database is unreachable (see the module docstring).

    `process_exception` catches errors raised by views and template rendering; an error in
    another middleware (a session saved on the way out) becomes Django's 500 before any
    middleware sees it, so a `got_request_exception` receiver remembers it on the request
    and `__call__` swaps that 500 for the 503. List this middleware first.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        exc = getattr(request, "_database_error", None)
        if exc is not None and response.status_code == 500:
            return database_unavailable_response(request, exc)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_ERRORS):
            return database_unavailable_response(request, exception)
        return None


def _remember_database_error(sender, request=None, **kwargs) -> None:
    exc = sys.exc_info()[1]
    if request is not None and isinstance(exc, DATABASE_ERRORS):
        request._database_error = exc


got_request_exception.connect(_remember_database_error, dispatch_uid="mythragen-db-unavailable")


def body_charset_problem(charset: str) -> str | None:
    """Why a request's Content-Type charset cannot decode text (None: it can)."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        return f"unknown charset {charset!r}"
    try:
        # rot13 (str to str) and zlib_codec (bytes to bytes) are codecs, not text encodings;
        # "undefined" and idna cannot decode with errors="replace", as Django decodes forms.
        if not info._is_text_encoding or not isinstance(b"a=1".decode(charset, "replace"), str):
            raise LookupError
    except (LookupError, UnicodeError):
        return f"charset {charset!r} cannot decode a request body"
    return None


class BodyCharsetMiddleware:
    """A request whose Content-Type names a charset that cannot decode text is a 400.

    Django takes the charset of a form post from its Content-Type and accepts any name
    `codecs.lookup` knows, "rot13" and "zlib_codec" included; reading the form then raised
    `LookupError`, a 500, on every page that reads `request.POST`. The API's parsers
    refuse these themselves, but with this middleware no view ever sees one. An unknown
    charset is refused too (Django silently ignored it and read the body as UTF-8).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        charset = getattr(request, "content_params", {}).get("charset")
        problem = body_charset_problem(charset) if charset else None
        if problem is None:
            return self.get_response(request)
        message = f"The request body cannot be read: {problem}. Send UTF-8."
        if _wants_json(request):
            return JsonResponse({"detail": message, "code": "unsupported_charset"}, status=400)
        return HttpResponse(BAD_REQUEST_PAGE.format(message=escape(message)), status=400)
