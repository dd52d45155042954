from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and consent"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the session clean-up
