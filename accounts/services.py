"""Sign-in throttling and API tokens.

Every way to present a password or a token counts its failures per client address: the
site's and the admin's sign-in forms (Django's `user_login_failed` signal), the token
endpoint (the same signal) and requests with a bad `Authorization: Token ...`. After
`AUTH_FAILURE_LIMIT` failures within `AUTH_FAILURE_WINDOW` seconds (counted
from the first), the address is refused until the window ends: no password is checked
(`backends.ThrottledModelBackend`), the sign-in page and the API answer 429 with
`Retry-After`. Successful sign-ins do not reset the count (an attacker with an account of
their own could otherwise interleave them). Counts live in the default cache: per process
unless CACHE_URL names a shared one (Redis).

The client address is REMOTE_ADDR, or the address `MYTHRAGEN_NUM_PROXIES` proxies in
front of the server put in X-Forwarded-For (DRF's rule, so API throttles agree): never a
header a client can choose freely.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.throttling import BaseThrottle


def client_address(request) -> str:
    """The address throttles count by (DRF's `get_ident`, with NUM_PROXIES); a server
    that passes no REMOTE_ADDR (a unix socket) counts all its clients as one."""
    return BaseThrottle().get_ident(request) or "unknown"


def _keys(request) -> tuple[str, str]:
    digest = hashlib.sha256(client_address(request).encode()).hexdigest()[:32]
    return f"auth-failures:{digest}", f"auth-failures-until:{digest}"


def auth_failure_record(request) -> None:
    """Count one failed sign-in or bad token from the request's address."""
    window = settings.AUTH_FAILURE_WINDOW
    count_key, until_key = _keys(request)
    cache.add(until_key, time.time() + window, window)
    cache.add(count_key, 0, window)
    try:
        cache.incr(count_key)
    except ValueError:  # expired between add and incr: a new window
        cache.set(count_key, 1, window)


def auth_throttle_wait(request) -> int:
    """Seconds until the request's address may sign in again (0: now)."""
    count_key, until_key = _keys(request)
    if (cache.get(count_key) or 0) < settings.AUTH_FAILURE_LIMIT:
        return 0
    until = cache.get(until_key)
    return max(1, math.ceil(until - time.time())) if until else 0


def auth_throttle_message(wait: int | None = None) -> str:
    """Why sign-ins are refused (with the wait, unless DRF's Throttled appends it)."""
    then = f" Try again in {wait} s." if wait else ""
    return (
        f"Too many failed sign-ins from your address (at most {settings.AUTH_FAILURE_LIMIT} "
        f"per {settings.AUTH_FAILURE_WINDOW} s).{then}"
    )


def on_login_failed(sender, credentials=None, request=None, **kwargs) -> None:
    """`user_login_failed` receiver: every failed `authenticate()` with a request counts."""
    if request is not None:
        auth_failure_record(request)


def auth_token_issue(user) -> Token:
    """The user's API token (created on first use; one per user, until revoked)."""
    token, _created = Token.objects.get_or_create(user=user)
    return token


def auth_token_revoke(user) -> bool:
    """Delete the user's API token; the next `auth_token_issue` makes a new one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
