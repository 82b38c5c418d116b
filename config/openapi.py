"""What the OpenAPI schema says beyond what drf-spectacular infers, so generated clients
(openapi-python-client: tests/test_openapi_client.py) work with no edits.

- Session authentication with its CSRF rule: a browser session (sign in at
  /accounts/login/) may call every endpoint; unsafe methods also send the `csrftoken`
  cookie's value in the `X-CSRFToken` header. Token authentication is described where it
  is defined (accounts/authentication.py).
- Refusals (`Refusal`): `detail` and any field name map to the reasons.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

UNSAFE = {"post", "put", "patch", "delete"}
CSRF_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "X-CSRFToken",
    "description": "With session authentication, unsafe methods (POST, PUT, PATCH, DELETE) "
    "must send the value of the `csrftoken` cookie in this header (Django's CSRF check). "
    "Token authentication needs no CSRF token.",
}


class SessionCsrfScheme(OpenApiAuthenticationExtension):
    """The browser session (`sessionid` cookie), with the CSRF rule in its description."""

    target_class = "rest_framework.authentication.SessionAuthentication"
    name = "cookieAuth"
    priority = 1  # over drf-spectacular's own description of SessionAuthentication

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "A browser session: sign in at /accounts/login/. Writes also need "
            "the CSRF token (the csrfToken scheme).",
        }


def postprocess_schema(result, generator, request, public):
    """Attach the CSRF requirement to unsafe operations that accept a session, and give
    refusals their field map (a serializer cannot say "any other field")."""
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    if "cookieAuth" in schemes:
        schemes["csrfToken"] = CSRF_SCHEME
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in UNSAFE:
                continue
            operation["security"] = [
                {**entry, "csrfToken": []} if "cookieAuth" in entry else entry
                for entry in operation.get("security", [])
            ]
    refusal = result["components"].get("schemas", {}).get("Refusal")
    if refusal is not None:
        reasons = {"type": "array", "items": {"type": "string"}}
        refusal["additionalProperties"] = {
            "oneOf": [
                reasons,
                # A field holding an object or a list (a generation's `filters`, a bulk
                # operation's ids): the reasons per key or position.
                {"type": "object", "additionalProperties": reasons},
            ],
            "description": "the reasons one request field (e.g. `prompt`, `filters.style`, "
            "`non_field_errors`) was refused",
        }
    return result
