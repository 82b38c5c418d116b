from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from accounts import services

        # Every failed sign-in (site, admin, API token) counts toward the address's limit.
        user_login_failed.connect(services.on_login_failed, dispatch_uid="accounts-throttle")
