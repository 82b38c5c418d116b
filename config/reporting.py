"""Error reports (the debug page, error e-mails) that print no secret.

Django masks settings whose *name* contains KEY, PASS, SECRET, TOKEN, ... This project
reads its database, broker, result and cache servers from URLs (`DATABASE_URL`,
`CELERY_BROKER_URL`, `CELERY_RESULT_BACKEND`, `CACHE_URL`), which carry passwords under
names Django does not mask, and the development server copies the environment into
`request.META`, so the debug page printed them twice. Here:

- `SecretSafeExceptionReporterFilter` (DEFAULT_EXCEPTION_REPORTER_FILTER) also masks the
  URL-shaped settings and environment variables by name (`URL_SETTINGS`), and the
  credentials of any value shaped like a URL with a user or password (`mask_credentials`),
  in settings, request.META, cookies and local variables of the traceback;
- `SecretSafeExceptionReporter` (DEFAULT_EXCEPTION_REPORTER) passes the finished page and
  text through `mask_credentials` once more, so an exception message that quotes a URL
  (a driver's "could not connect to redis://:pw@host") is masked too.
"""

from __future__ import annotations

import re

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute

# Names (settings, environment variables) whose whole value is hidden: connection URLs.
URL_SETTINGS = re.compile(
    r"DATABASE_URL|BROKER|RESULT_BACKEND|CACHE_URL|REDIS_URL|AMQP_URL|EMAIL_URL|DSN", re.I
)
# scheme://user:password@host or scheme://:password@host or scheme://token@host
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/@\s\"'<>]+)@", re.I)
# ...?password=... in a query string
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pass|pwd|secret|token|key|api_key|auth)=)[^&;\s\"'<>]*",
    re.I,
)


def mask_credentials(text: str) -> str:
    """`text` with the user/password part and secret query values of URLs masked."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{SUBSTITUTE}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{SUBSTITUTE}", text)


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus connection URLs by name and credentials in any URL."""

    def cleanse_setting(self, key, value):
        if isinstance(key, str) and key and URL_SETTINGS.search(key):
            if isinstance(value, dict | list | tuple):  # transport options: keep the shape
                return super().cleanse_setting("", value)
            return SUBSTITUTE
        cleansed = super().cleanse_setting(key, value)
        return mask_credentials(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self.cleanse_setting(name, value) if isinstance(value, str) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]


class SecretSafeExceptionReporter(ExceptionReporter):
    """Django's report with every URL credential masked in the final page and text."""

    def get_traceback_html(self):
        return mask_credentials(super().get_traceback_html())

    def get_traceback_text(self):
        return mask_credentials(super().get_traceback_text())
