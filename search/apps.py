from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "search"
    verbose_name = "Search and browse"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (drops query photos with the face data)
