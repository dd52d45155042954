from django.apps import AppConfig


class IndexingConfig(AppConfig):
    name = "indexing"
    verbose_name = "Photo library and indexing"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the account-deletion receiver)
