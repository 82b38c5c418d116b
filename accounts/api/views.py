"""The API token endpoint: exchange a username and password for a token, or revoke it."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import Throttled
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.api.serializers import TokenRequestSerializer, TokenSerializer
from catalog.api.serializers import ERROR_400, DetailSerializer

THROTTLED = OpenApiResponse(
    DetailSerializer, description="Too many failed sign-ins from this address (Retry-After)."
)


class TokenView(APIView):
    """Your API token: POST a username and password to get it (the same token until you
    revoke it), DELETE to revoke it. Failed attempts count toward the address's sign-in
    limit; past it the answer is 429 with Retry-After."""

    def get_permissions(self):
        if self.request.method == "DELETE":
            return [permissions.IsAuthenticated()]
        return [permissions.AllowAny()]

    def get_authenticators(self):
        # POST authenticates with the body alone (no session, so no CSRF token needed).
        if getattr(self.request, "method", "") == "POST":
            return []
        return super().get_authenticators()

    @extend_schema(
        auth=[],
        request=TokenRequestSerializer,
        responses={200: TokenSerializer, 400: ERROR_400, 429: THROTTLED},
    )
    def post(self, request):
        wait = services.auth_throttle_wait(request)
        if wait:
            raise Throttled(wait, services.auth_throttle_message())
        body = TokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = authenticate(request._request, **body.validated_data)
        if user is None:  # the failure was counted by the user_login_failed signal
            wait = services.auth_throttle_wait(request)
            if wait:
                raise Throttled(wait, services.auth_throttle_message())
            return Response(
                {"non_field_errors": ["Unable to sign in with the username and password given."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"token": services.auth_token_issue(user).key})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        services.auth_token_revoke(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
