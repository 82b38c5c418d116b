"""The authentication backend: Django's, refusing at once while an address is throttled."""

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts.services import auth_throttle_wait


class ThrottledModelBackend(ModelBackend):
    """`ModelBackend` that checks no password for a throttled address (see services).

    Raising PermissionDenied stops `authenticate()` for every sign-in form (the site's,
    the admin's, the token endpoint's), so a throttled address costs no password hash and
    learns nothing. The site's page and the API say why (429); the admin's form only
    shows its usual error.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None and auth_throttle_wait(request):
            raise PermissionDenied("too many failed sign-ins from this address")
        return super().authenticate(request, username=username, password=password, **kwargs)
