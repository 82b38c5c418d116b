"""API authentication by token, with failures throttled per address."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled

from accounts import services


class ThrottledTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` (DRF's tokens, from `POST /api/auth/token/`).

    A bad token is a 401 and counts as a failed sign-in of the address; a throttled
    address gets 429 with Retry-After before any token is looked up.
    """

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None
        wait = services.auth_throttle_wait(request)
        if wait:
            raise Throttled(wait, services.auth_throttle_message())
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            services.auth_failure_record(request)
            raise


class ThrottledTokenScheme(OpenApiAuthenticationExtension):
    """The schema's description of token authentication (and how to get a token)."""

    target_class = "accounts.authentication.ThrottledTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                'An API token, sent as "Authorization: Token <key>". Get one with POST '
                "/api/auth/token/ (username and password); DELETE /api/auth/token/ revokes "
                "it. A bad token is a 401; repeated failures from one address are a 429 "
                "with Retry-After."
            ),
        }
