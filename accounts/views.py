"""The site's sign-in page, throttled like every other way to sign in (see services)."""

from django.contrib.auth import views as auth_views

from accounts import services


class LoginView(auth_views.LoginView):
    """Django's sign-in page; past the address's failure limit a POST is a 429 with
    Retry-After that says how long to wait (no password is checked)."""

    def post(self, request, *args, **kwargs):
        wait = services.auth_throttle_wait(request)
        if wait:
            return self._throttled(wait)
        response = super().post(request, *args, **kwargs)
        wait = services.auth_throttle_wait(request)
        if wait and response.status_code == 200:  # this failure reached the limit
            return self._throttled(wait)
        return response

    def _throttled(self, wait: int):
        context = self.get_context_data(
            form=self.get_form_class()(self.request), throttled=services.auth_throttle_message(wait)
        )
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response
